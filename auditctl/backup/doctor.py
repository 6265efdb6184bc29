"""``auditctl doctor``: the checks a nightly backup depends on, each with what to fix."""

from __future__ import annotations

import logging
import shutil
import smtplib
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from ..db import connect
from ..errors import AuditctlError
from ..files import check_writable_folder, os_reason
from ..i18n import _, ngettext
from .config import BackupSettings
from .encryption import Encryption, load_encryption, load_identities
from .mail import read_password, smtp_port, smtp_session
from .manifest import find_backups
from .partials import find_partials
from .pgtools import find_tool

logger = logging.getLogger(__name__)

# Free space wanted beyond the newest backup's size, as a multiple of it.
_FREE_SPACE_FACTOR = 2


@dataclass(frozen=True)
class Check:
    """One check: its name, whether it passed, and a detail or the fix."""

    name: str
    ok: bool
    detail: str


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def run_checks(settings: BackupSettings) -> DoctorReport:
    """Run every check that applies to these settings; a failed check never stops the others."""
    report = DoctorReport()
    report.checks.append(Check(_("config file"), True, str(settings.config_path or _("none; defaults and flags"))))
    server_major = _check_connection(settings, report)
    if server_major is not None:
        _check_tools(settings, server_major, report)
    _check_folder(settings, report)
    encryption = _check_encryption(settings, report)
    if settings.identity_file is not None:
        _check_identity(settings.identity_file, encryption, report)
    if settings.mail is not None and settings.mail.transport == "smtp":
        _check_smtp(settings, report)
    elif settings.mail is not None and settings.mail.transport == "sendmail":
        _check_sendmail(settings, report)
    if settings.storage is not None:
        _check_storage(settings, report)
    return report


def _check_connection(settings: BackupSettings, report: DoctorReport) -> int | None:
    if settings.from_url:
        report.checks.append(Check(_("database"), True, _("not used: backups come from {url}").format(
            url=settings.from_url)))
        return None
    try:
        with connect(settings.dsn, option_origin=settings.dsn_origin) as connection:
            version = connection.info.server_version
            database = connection.execute("SELECT pg_catalog.current_database()").fetchone()[0]
    except AuditctlError as exc:
        report.checks.append(Check(_("database"), False, str(exc)))
        return None
    report.checks.append(Check(_("database"), True, _("{database} on PostgreSQL {major}").format(
        database=database, major=version // 10000)))
    return version // 10000


def _check_tools(settings: BackupSettings, server_major: int, report: DoctorReport) -> None:
    names = ["pg_dump", "pg_restore"] + (["pg_dumpall"] if settings.with_globals else [])
    for name in names:
        try:
            tool = find_tool(name, server_major, settings.pg_bindir)
            report.checks.append(Check(name, True, f"{tool.path} ({tool.version_text})"))
        except AuditctlError as exc:
            report.checks.append(Check(name, False, str(exc)))


def _check_folder(settings: BackupSettings, report: DoctorReport) -> None:
    folder = settings.folder
    problem = check_writable_folder(folder)
    if problem is not None:
        report.checks.append(Check(_("backup folder"), False, problem.message(
            missing=_("{folder} does not exist; create it."),
            not_a_folder=_("{folder} is not a folder; set dir to a folder."),
            not_writable=_("{folder} is not writable ({error}); set dir to another folder."),
            folder=folder)))
        return
    free = shutil.disk_usage(folder).free
    backups = find_backups(folder)
    needed = backups[-1].manifest.size * _FREE_SPACE_FACTOR if backups else 0
    free_mib = free // (1024 * 1024)
    if free < needed:
        report.checks.append(Check(_("disk space"), False, _(
            "{folder}: {free} MiB free, but the next backup needs about {need} MiB (twice the last one). "
            "Free some space or keep fewer backups.").format(folder=folder, free=free_mib,
                                                             need=needed // (1024 * 1024))))
    else:
        report.checks.append(Check(_("backup folder"), True, _("{folder}: {free} MiB free").format(
            folder=folder, free=free_mib)))
    partials = find_partials(folder)
    if partials:
        # The check passes because the next run deletes them. Each one shows a run that ended without cleaning up.
        report.checks.append(Check(_("partial files"), True, ngettext(
            "{names}: left by a run that was killed, or written by a run in progress; the next backup run "
            "deletes it.",
            "{names}: left by runs that were killed, or written by a run in progress; the next backup run "
            "deletes them.", len(partials)).format(names=", ".join(path.name for path in partials))))


def _check_encryption(settings: BackupSettings, report: DoctorReport) -> Encryption | None:
    try:
        encryption = load_encryption(list(settings.recipients), settings.recipients_file, settings.passphrase_file)
    except AuditctlError as exc:
        report.checks.append(Check(_("encryption"), False, str(exc)))
        return None
    if encryption is not None and encryption.passphrase_file is not None:
        report.checks.append(Check(_("encryption"), True, _("age passphrase from {path}").format(
            path=encryption.passphrase_file)))
    elif encryption is not None:
        count = len(encryption.recipients)
        report.checks.append(Check(_("encryption"), True, ngettext(
            "{count} age recipient", "{count} age recipients", count).format(count=count)))
    return encryption


def _check_identity(path: Path, encryption: Encryption | None, report: DoctorReport) -> None:
    """Check that the identity file that verify and restore use can be read and opens the new backups."""
    try:
        identities = load_identities(path)
    except AuditctlError as exc:
        report.checks.append(Check(_("identity file"), False, str(exc)))
        return
    public_keys = {str(identity.to_public()) for identity in identities}
    age_recipients = [key for key in encryption.recipients if key.startswith("age1")] if encryption else []
    # NOTE: SSH recipients are left out, because load_identities reads only AGE-SECRET-KEY-1 lines, whose
    # public keys are age1 keys.
    if age_recipients and not public_keys.intersection(age_recipients):
        report.checks.append(Check(_("identity file"), False, _(
            "{path} holds no private key of the age recipients, so backup verify and backup restore cannot "
            "decrypt new backups with it; put the key of one recipient there.").format(path=path)))
        return
    report.checks.append(Check(_("identity file"), True, str(path)))


def _check_smtp(settings: BackupSettings, report: DoctorReport) -> None:
    """Connect, negotiate TLS and log in, without sending anything."""
    mail = settings.mail
    port = smtp_port(mail)
    try:
        password = read_password(mail)
        if password is not None and mail.security == "none" and not mail.allow_plaintext_auth:
            raise smtplib.SMTPException(_("login skipped: the connection is not encrypted"))
        with smtp_session(mail, password):
            pass
    except ssl.SSLCertVerificationError as exc:
        detail = _("{host}:{port}: certificate verify failed ({reason}). If the server's certificate is self-signed "
                   "or from a private CA, set SSL_CERT_FILE to that certificate for this command and for `auditctl "
                   "cron install`, which copies it into the cron line.")
        report.checks.append(Check(_("SMTP"), False, detail.format(host=mail.host, port=port,
                                                                   reason=exc.verify_message or exc.reason)))
        return
    except (AuditctlError, smtplib.SMTPException, OSError) as exc:
        report.checks.append(Check(_("SMTP"), False, _("{host}:{port}: {error}").format(
            host=mail.host, port=port, error=describe_smtp_error(exc))))
        return
    if password is None:
        detail = _("{host}:{port}, connected; no login configured").format(host=mail.host, port=port)
    else:
        detail = _("{host}:{port}, login accepted").format(host=mail.host, port=port)
    report.checks.append(Check(_("SMTP"), True, detail))


def _check_sendmail(settings: BackupSettings, report: DoctorReport) -> None:
    """Find the sendmail program the way ``subprocess.run`` does: a path as given, a bare name on PATH."""
    command = settings.mail.sendmail_command
    program = shutil.which(command)
    if program is None:
        report.checks.append(Check(_("sendmail"), False, _(
            "{command} is not found or not executable; install sendmail or msmtp, or set sendmail_command in "
            "[mail] to its path.").format(command=command)))
        return
    report.checks.append(Check(_("sendmail"), True, program))


def describe_smtp_error(error: Exception) -> str:
    """Show an SMTP reply as the server wrote it ("535 5.7.8 …"), not as smtplib's (code, bytes) tuple."""
    if isinstance(error, smtplib.SMTPResponseException):
        text = error.smtp_error
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return f"{error.smtp_code} {' '.join(str(text).split())}"
    if isinstance(error, OSError):
        return os_reason(error) or type(error).__name__
    return str(error) or type(error).__name__


def _check_storage(settings: BackupSettings, report: DoctorReport) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from .storage import is_missing_bucket, make_client
    storage = settings.storage
    try:
        make_client(storage).head_bucket(Bucket=storage.bucket)
    except (AuditctlError, BotoCoreError, ClientError) as exc:
        if is_missing_bucket(exc):
            detail = _("bucket {bucket} does not exist at {endpoint}; create it or correct bucket in "
                       "[storage].").format(bucket=storage.bucket, endpoint=storage.endpoint_url or "AWS S3")
        else:
            detail = _("bucket {bucket}: {error}").format(bucket=storage.bucket, error=exc)
        report.checks.append(Check(_("storage"), False, detail))
        return
    report.checks.append(Check(_("storage"), True, _("bucket {bucket} is reachable").format(bucket=storage.bucket)))
