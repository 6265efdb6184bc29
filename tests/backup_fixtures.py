"""Fixtures for the backup tests: real SMTP, S3 and HTTP servers on 127.0.0.1, and sample databases.

Every server listens on 127.0.0.1 only and is stopped when its fixture ends.
"""

from __future__ import annotations

import contextlib
import datetime
import email
import email.policy
import http.server
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SMTP_USER = "backup-bot"
# A password with every character that breaks naive quoting in URLs, shells and DSNs.
SMTP_PASSWORD = "p@ss:w/rd%&'\"x"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Certificate:
    cert_path: Path
    key_path: Path


@pytest.fixture(scope="session")
def loopback_certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for localhost and 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path = folder / "cert.pem"
    key_path = folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Certificate(cert_path, key_path)


@dataclass
class SmtpServer:
    """A running aiosmtpd server and the messages it accepted, parsed."""

    host: str
    port: int
    messages: list[email.message.EmailMessage] = field(default_factory=list)
    envelopes: list[list[str]] = field(default_factory=list)
    logins: list[tuple[str, bool]] = field(default_factory=list)

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)


def _start_smtp(certificate: Certificate, implicit_tls: bool) -> tuple[SmtpServer, object]:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    server = SmtpServer("127.0.0.1", free_port())

    class Handler:
        async def handle_DATA(self, smtp, session, envelope):
            parsed = email.message_from_bytes(envelope.original_content or envelope.content,
                                              policy=email.policy.default)
            server.messages.append(parsed)
            server.envelopes.append(list(envelope.rcpt_tos))
            return "250 OK"

    def authenticator(smtp, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == SMTP_USER
              and auth_data.password.decode() == SMTP_PASSWORD)
        server.logins.append((auth_data.login.decode() if isinstance(auth_data, LoginPassword) else "?", ok))
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate.cert_path, certificate.key_path)
    if implicit_tls:
        controller = Controller(Handler(), hostname="127.0.0.1", port=server.port, ssl_context=context,
                                authenticator=authenticator, auth_required=True, auth_require_tls=False,
                                server_hostname="localhost")
    else:
        controller = Controller(Handler(), hostname="127.0.0.1", port=server.port, tls_context=context,
                                require_starttls=True, authenticator=authenticator, auth_required=True,
                                auth_require_tls=True, data_size_limit=64 * 1024 * 1024)
    controller.start()
    return server, controller


@pytest.fixture
def smtp_starttls(loopback_certificate: Certificate) -> Iterator[SmtpServer]:
    """An SMTP server that requires STARTTLS and AUTH."""
    server, controller = _start_smtp(loopback_certificate, implicit_tls=False)
    yield server
    controller.stop()


@pytest.fixture
def smtp_tls(loopback_certificate: Certificate) -> Iterator[SmtpServer]:
    """An SMTP server with implicit TLS (as on port 465) and AUTH."""
    server, controller = _start_smtp(loopback_certificate, implicit_tls=True)
    yield server
    controller.stop()


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str
    environment: dict[str, str]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 in server mode on 127.0.0.1, with one bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    environment = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing-key", aws_secret_access_key="testing-secret")
    client.create_bucket(Bucket="backups")
    yield S3Server(endpoint, "backups", environment)
    server.stop()


@dataclass
class HttpEndpoint:
    """A loopback HTTP server whose response the test sets, and the method, path and headers of each request."""

    url: str
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    declared_length: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    methods: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)


@contextlib.contextmanager
def serve_endpoint() -> Iterator[HttpEndpoint]:
    """Run an HttpEndpoint on a free loopback port until the block ends; GET and POST get the same response."""
    port = free_port()
    endpoint = HttpEndpoint(f"http://127.0.0.1:{port}/api/backup/create")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            endpoint.requests.append(dict(self.headers))
            endpoint.methods.append(self.command)
            endpoint.paths.append(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            endpoint.bodies.append(self.rfile.read(length) if length else b"")
            self.send_response(endpoint.status)
            self.send_header("Content-Type", endpoint.content_type)
            for name, value in endpoint.headers.items():
                self.send_header(name, value)
            length = endpoint.declared_length if endpoint.declared_length is not None else len(endpoint.body)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(endpoint.body)

        do_GET = do_POST  # noqa: N815 (http.server's naming)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_endpoint() -> Iterator[HttpEndpoint]:
    with serve_endpoint() as endpoint:
        yield endpoint


@pytest.fixture
def other_http_endpoint() -> Iterator[HttpEndpoint]:
    """A second endpoint on another port, as the target of a redirect."""
    with serve_endpoint() as endpoint:
        yield endpoint


@contextlib.contextmanager
def tcp_forwarder(target_host: str, target_port: int) -> Iterator[int]:
    """Forward a new port of 127.0.0.1 to ``target_host:target_port``, so one server looks like two; yield the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stopping = threading.Event()
    connections: list[socket.socket] = []

    def pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stopping.is_set():
            try:
                client, _address = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((target_host, target_port))
            connections.extend((client, upstream))
            threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pump, args=(upstream, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield port
    finally:
        stopping.set()
        listener.close()
        for connection in connections:
            connection.close()


def sample_rows(connection, name: str = "invoice", rows: int = 50) -> None:
    """Create a small table with text that needs UTF-8."""
    connection.execute(f'CREATE TABLE "{name}" (id integer PRIMARY KEY, note text NOT NULL)')
    connection.execute(f'INSERT INTO "{name}" SELECT g, \'счёт №\' || g FROM generate_series(1, %s) g', (rows,))


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
