"""The report mail: building it with the stdlib ``email`` package and sending it over SMTP or sendmail.

Subjects and attachment names that are not ASCII are encoded by the
``email`` package (RFC 2047 for headers, RFC 2231 for file names), so mail
clients show Cyrillic database names as they are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid
from pathlib import Path

from ..errors import ConfigError, DeliveryError
from ..files import os_reason
from ..i18n import _
from .config import MailSettings

logger = logging.getLogger(__name__)

# Room reserved for headers, the text part and MIME boundaries when deciding
# whether an attachment fits; a report body is about 1 KiB.
MESSAGE_OVERHEAD_BYTES = 16 * 1024
_DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}


@dataclass(frozen=True)
class MailReport:
    """The subject, body and attachment of a report mail; every text is already translated."""

    subject: str
    body: str
    attachment: Path | None = None


def encoded_size(raw_size: int) -> int:
    """Size of ``raw_size`` bytes once base64-encoded in 76-character lines ending in CRLF."""
    encoded = 4 * ((raw_size + 2) // 3)
    lines = (encoded + 75) // 76
    return encoded + 2 * lines


def attachment_fits(size: int, limit: int) -> bool:
    """Tell whether a file of ``size`` bytes, base64-encoded, fits in a message of at most ``limit`` bytes."""
    return encoded_size(size) + MESSAGE_OVERHEAD_BYTES <= limit


class _EncodedHeader(str):
    """A header value that ``email.header.Header`` encodes and folds, instead of the message's policy.

    The policy's folding, in Python 3.11 at least, can put the space
    between an ASCII word and the non-ASCII word after it at the boundary
    of two encoded words, where decoders drop it: "копия app создана" then
    reads "копия appсоздана". ``Header`` keeps each space inside an encoded
    word. The policy calls ``fold()`` of a value that has a ``name``.
    """

    name: str

    def __new__(cls, name: str, value: str) -> _EncodedHeader:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy) -> str:
        encoded = Header(str(self), "utf-8", header_name=self.name).encode(linesep=policy.linesep)
        return f"{self.name}: {encoded}{policy.linesep}"


def build_message(settings: MailSettings, report: MailReport) -> EmailMessage:
    message = EmailMessage(policy=SMTP)
    message["Subject"] = report.subject if report.subject.isascii() else _EncodedHeader("Subject", report.subject)
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    # quoted-printable keeps the message 7-bit, for relays without 8BITMIME.
    message.set_content(report.body, cte="quoted-printable")
    if report.attachment is not None:
        # NOTE: the attachment is read into memory; attachment_fits() caps it at max_attachment_mb.
        message.add_attachment(report.attachment.read_bytes(), maintype="application", subtype="octet-stream",
                               filename=report.attachment.name)
    return message


def read_password(settings: MailSettings) -> str | None:
    """Read the SMTP password from its environment variable or from a file only its owner can read."""
    if settings.password_env:
        password = os.environ.get(settings.password_env)
        if not password:
            raise ConfigError(_("Environment variable {name} (mail password_env) is not set or empty.")
                              .format(name=settings.password_env))
        return password
    if settings.password_file:
        try:
            mode = settings.password_file.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(_("Password file {path} is readable by other users; run `chmod 600 {path}`.")
                                  .format(path=settings.password_file))
            return settings.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(_("Cannot read password file {path}: {error}")
                              .format(path=settings.password_file, error=exc.strerror)) from None
    return None


def send_message(settings: MailSettings, message: EmailMessage) -> None:
    """Send over SMTP or hand to sendmail; raise DeliveryError naming the server and the cause."""
    if settings.transport == "sendmail":
        _send_with_sendmail(settings, message)
    elif settings.transport == "smtp":
        _send_with_smtp(settings, message)
    else:
        raise ConfigError(_("Invalid mail transport {value!r}: use smtp or sendmail.").format(value=settings.transport))
    logger.info("sent report mail to %s", ", ".join(settings.to))


def smtp_port(settings: MailSettings) -> int:
    """Return the configured SMTP port, or the usual one for the security mode."""
    return settings.port or _DEFAULT_PORTS.get(settings.security, 25)


@contextlib.contextmanager
def smtp_session(settings: MailSettings, password: str | None) -> Iterator[smtplib.SMTP]:
    """Connect with implicit TLS or STARTTLS as configured, log in when a password is given, and yield the client.

    The caller checks beforehand that a password never goes over an unencrypted connection.
    """
    context = ssl.create_default_context()
    port = smtp_port(settings)
    if settings.security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(settings.host, port, timeout=settings.timeout_seconds,
                                                context=context)
    else:
        client = smtplib.SMTP(settings.host, port, timeout=settings.timeout_seconds)
    with client:
        if settings.security == "starttls":
            client.starttls(context=context)
            client.ehlo()
        if password is not None:
            client.login(settings.username, password)
        yield client


def _send_with_smtp(settings: MailSettings, message: EmailMessage) -> None:
    if settings.security not in _DEFAULT_PORTS:
        raise ConfigError(_("Invalid mail security {value!r}: use tls, starttls or none.").format(
            value=settings.security))
    password = read_password(settings)
    if password is not None and not settings.username:
        raise ConfigError(_("A mail password is configured but no username; set username in [mail]."))
    if password is not None and settings.security == "none" and not settings.allow_plaintext_auth:
        raise ConfigError(
            _("Refusing to send the SMTP password over an unencrypted connection to {host}. Use security = "
              "\"tls\" or \"starttls\", or set allow_plaintext_auth = true if the link is trusted.")
            .format(host=settings.host))
    target = f"{settings.host}:{smtp_port(settings)}"
    try:
        with smtp_session(settings, password) as client:
            client.send_message(message)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(_("SMTP login to {target} as {user} failed: {code} {error}").format(
            target=target, user=settings.username, code=exc.smtp_code,
            error=exc.smtp_error.decode("utf-8", "replace"))) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(_("Sending mail through {target} failed: {error}").format(
            target=target, error=os_reason(exc) or type(exc).__name__)) from None


def _send_with_sendmail(settings: MailSettings, message: EmailMessage) -> None:
    """Pipe the message to ``sendmail -i -t``-compatible programs such as msmtp."""
    command = [settings.sendmail_command, "-i", "--", *settings.to]
    try:
        result = subprocess.run(command, input=message.as_bytes(), capture_output=True,
                                timeout=settings.timeout_seconds, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeliveryError(_("Running {command} failed: {error}").format(
            command=settings.sendmail_command, error=exc)) from None
    if result.returncode != 0:
        raise DeliveryError(_("{command} exited with code {code}: {error}").format(
            command=settings.sendmail_command, code=result.returncode,
            error=result.stderr.decode("utf-8", "replace").strip()))
