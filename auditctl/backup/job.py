"""One ``auditctl backup`` run: lock, dump (or fetch), rotate, record the event and mail the report.

The order matters: rotation runs only after a verified backup, and mail and
audit events never decide whether the backup itself is kept. Every failure
after the settings were read, from a missing backup folder to SIGTERM during
the dump, is recorded, mailed and reported to monitoring.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import conninfo

from ..db import describe_dsn, resolve_dsn
from ..errors import AuditctlError, BackupInterruptedError
from ..i18n import _, format_bytes, format_duration, ngettext
from . import events, monitoring
from .config import BackupSettings
from .dump import BackupResult, DumpOptions, dump_database, require_folder
from .encryption import Encryption, load_encryption
from .http_source import UrlSource, backup_from_url, read_header
from .identity import url_identity
from .interruption import Interrupted, SignalGuard
from .lock import backup_lock
from .mail import MailReport, attachment_fits, build_message, read_password, send_message
from .manifest import BackupEntry, find_backups, utc_now
from .partials import remove_stale_partials
from .rotation import RotationPolicy, RotationResult, rotate
from .storage import UploadResult, make_client, upload_backup

logger = logging.getLogger(__name__)


@dataclass
class JobReport:
    """The outcome of a run: the backup or the error, and what happened around it."""

    started: float
    result: BackupResult | None = None
    error: AuditctlError | None = None
    rotation: RotationResult | None = None
    upload: UploadResult | None = None
    mail_sent: bool = False
    delivery_errors: list[str] = field(default_factory=list)
    event_id: int | None = None
    removed_partials: list[Path] = field(default_factory=list)

    @property
    def duration_seconds(self) -> float:
        return time.monotonic() - self.started


class _TailHandler(logging.Handler):
    """Keeps the last log lines of the run for the failure mail."""

    def __init__(self, size: int):
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextlib.contextmanager
def _log_tail(size: int) -> Iterator[_TailHandler]:
    tail = _TailHandler(size)
    package_logger = logging.getLogger("auditctl")
    package_logger.addHandler(tail)
    try:
        yield tail
    finally:
        package_logger.removeHandler(tail)


def check_secrets(settings: BackupSettings) -> None:
    """Read every secret that the run needs after the dump, so that a missing one stops the run before the dump.

    These are the SMTP password, the storage keys and the header of
    ``--from-url``, from their variables or files. Raises ConfigError naming
    the variable or file, as ``doctor`` reports it.
    """
    if settings.mail is not None and settings.mail.transport == "smtp":
        read_password(settings.mail)
    if settings.storage is not None:
        make_client(settings.storage)
    if settings.from_url:
        read_header(UrlSource(settings.from_url, settings.header_env, settings.header_file))


def run_job(settings: BackupSettings, on_bytes: Callable[[int], None] | None = None,
            guard: SignalGuard | None = None) -> JobReport:
    """Run the whole nightly job under the folder's lock and report its outcome.

    Nothing is raised: the failure of the backup is in ``report.error`` and
    those of upload and mail in ``report.delivery_errors``. A second run that
    finds the lock held gets BackupLockedError there and touches no file.
    ``guard`` is the caller's SignalGuard, entered before its own checks, so
    that a signal during them counts too; without one the run guards itself.
    """
    report = JobReport(started=time.monotonic())
    with contextlib.ExitStack() as stack:
        if guard is None:
            guard = stack.enter_context(SignalGuard())
        with _log_tail(settings.mail.log_lines if settings.mail else 40) as tail, contextlib.ExitStack() as lock:
            try:
                with guard.raising():
                    monitoring.ping_heartbeat(settings.heartbeat_url, "start")
                    encryption = load_encryption(list(settings.recipients), settings.recipients_file,
                                                 settings.passphrase_file)
                    require_folder(settings.folder)
                    lock.enter_context(backup_lock(settings.folder))
                    _run_locked(settings, encryption, report, on_bytes)
            except AuditctlError as exc:
                report.error = exc
            except Interrupted:
                pass
            # From here a first signal is only noted, so that the event and the mail go out whole.
            if guard.received is not None:
                report.error = _interruption_error(guard.received, report)
            if report.error is not None and report.result is None:
                _record_failure(settings, report)
            if settings.mail is not None:
                _send_report(settings, report, "\n".join(tail.lines))
        _report_to_monitoring(settings, report)
        if guard.received is not None and not isinstance(report.error, BackupInterruptedError):
            # The signal came while the report of the run was being sent.
            report.error = _interruption_error(guard.received, report)
    return report


def _interruption_error(signum: int, report: JobReport) -> BackupInterruptedError:
    name = signal.Signals(signum).name
    if report.result is None:
        message = _("Interrupted by {signal} before the backup was complete; no backup file was kept.").format(
            signal=name)
    else:
        message = _("Interrupted by {signal} after {path} was written and verified; rotation, the audit event "
                    "or the report may be missing.").format(signal=name, path=report.result.path)
    return BackupInterruptedError(message, signum)


def _record_failure(settings: BackupSettings, report: JobReport) -> None:
    """Record BACKUP_FAILED in the audit log of the database, unless the run had no database (``--from-url``)."""
    if settings.from_url:
        return
    report.event_id = events.record_backup_event(
        settings.dsn, events.BACKUP_FAILED, {"error": str(report.error), "folder": str(settings.folder)},
        settings.audit_schema, settings.dsn_origin, backup_error=str(report.error))


def _report_to_monitoring(settings: BackupSettings, report: JobReport) -> None:
    success = report.result is not None
    problem = str(report.error) if report.error else "; ".join(report.delivery_errors)
    monitoring.ping_heartbeat(settings.heartbeat_url, "success" if success and not problem else "fail", problem)
    monitoring.write_metrics(settings.metrics_file, monitoring.RunMetrics(
        database=report.result.database if success else database_label(settings), success=success,
        finished_at=time.time(), duration_seconds=report.duration_seconds,
        size_bytes=report.result.size if success else None))


def _run_locked(settings: BackupSettings, encryption: Encryption | None, report: JobReport,
                on_bytes: Callable[[int], None] | None) -> None:
    """Dump or fetch, rotate and record BACKUP_CREATE; a failure of the backup itself is raised."""
    report.removed_partials = remove_stale_partials(settings.folder)
    if settings.from_url:
        source = UrlSource(settings.from_url, settings.header_env, settings.header_file,
                           settings.url_timeout_seconds, settings.max_body_bytes)
        report.result = backup_from_url(source, settings.folder, encryption)
    else:
        options = DumpOptions(folder=settings.folder, dsn=settings.dsn, dsn_origin=settings.dsn_origin,
                              dump_format=settings.dump_format,
                              jobs=settings.jobs, compress=settings.compress, with_globals=settings.with_globals,
                              encryption=encryption, pg_bindir=settings.pg_bindir)
        report.result = dump_database(options, on_bytes)

    result = report.result
    policy = RotationPolicy(settings.keep_last, settings.keep_daily, settings.keep_weekly, settings.keep_monthly)
    try:
        report.rotation = rotate(find_backups(settings.folder), policy, utc_now(),
                                 BackupEntry(result.path, result.manifest))
    except OSError as exc:
        # The new backup is complete; a file that cannot be deleted must not turn the run into a failure.
        logger.warning("rotation stopped: could not delete %s: %s", exc.filename, exc.strerror)
    if not settings.from_url:
        report.event_id = events.record_backup_event(
            settings.dsn, events.BACKUP_CREATE,
            {"file": result.path.name, "size": result.size, "sha256": result.manifest.sha256 or None,
             "format": result.manifest.format, "encrypted": result.manifest.encrypted,
             "duration_seconds": round(result.duration_seconds, 3)},
            settings.audit_schema, settings.dsn_origin)


def _send_report(settings: BackupSettings, report: JobReport, log_tail: str) -> None:
    """Attach, upload or point to the file, then send the mail.

    A mail or storage failure is added to ``delivery_errors`` instead of
    raised, so the backup itself is kept. The CLI prints those errors.
    """
    mail = settings.mail
    try:
        if report.error is not None or report.result is None:
            message = build_message(mail, failure_report(settings, report, log_tail))
        else:
            message = build_message(mail, success_report(settings, report))
        send_message(mail, message)
        report.mail_sent = True
    except (AuditctlError, OSError) as exc:
        report.delivery_errors.append(_("Report mail not sent: {error}").format(error=exc))


def _where(report: JobReport) -> str:
    return str(report.result.path.resolve())


def success_report(settings: BackupSettings, report: JobReport) -> MailReport:
    """Decide attachment, link or path, and word the success mail."""
    result = report.result
    mail = settings.mail
    size_text = format_bytes(result.size)
    lines = [
        _source_line(settings, result.database),
        _("Result: backup succeeded and was verified"),
        _("Size: {size}").format(size=size_text),
        _("Duration: {duration}").format(duration=format_duration(result.duration_seconds)),
        _("File on the server: {path}").format(path=_where(report)),
        "sha256: " + (result.manifest.sha256 or _("per file, see the .sha256 file")),
    ]
    attachment: Path | None = None
    if not result.path.exists():
        logger.warning("backup %s not found while writing the report mail; the mail says it is missing", result.path)
        lines.append(_("The backup is no longer at the path above; it was not attached or uploaded."))
    elif result.path.is_dir():
        lines.append(_("The backup is a directory-format folder, which cannot be attached or uploaded; "
                       "it is on the server at the path above."))
    elif attachment_fits(result.size, mail.max_attachment_bytes):
        attachment = result.path
        lines.append(_("The backup is attached."))
    elif settings.storage is not None:
        try:
            report.upload = upload_backup(settings.storage, result.path)
            hours = report.upload.expires_seconds // 3600
            lines.append(ngettext("The backup is too large to attach; download it within {hours} hour from:\n{url}",
                                  "The backup is too large to attach; download it within {hours} hours from:\n{url}",
                                  hours)
                         .format(hours=hours, url=report.upload.url))
        except AuditctlError as exc:
            # DeliveryError from the store, or ConfigError when its credentials are missing.
            report.delivery_errors.append(str(exc))
            lines.append(_("The backup is too large to attach and the upload failed: {error}").format(error=exc))
    else:
        lines.append(_("The backup is too large to attach; it is on the server at the path above."))
    if report.rotation is not None and report.rotation.deleted:
        count = len(report.rotation.deleted)
        lines.append(ngettext("Rotation deleted {count} old backup.", "Rotation deleted {count} old backups.",
                              count).format(count=count))
    subject = _("[auditctl] Backup of {database} succeeded ({size})").format(database=result.database,
                                                                            size=size_text)
    return MailReport(subject, "\n".join(lines) + "\n", attachment)


def failure_report(settings: BackupSettings, report: JobReport, log_tail: str) -> MailReport:
    """Word the failure mail: the error and the tail of the log."""
    database = database_label(settings)
    interrupted = isinstance(report.error, BackupInterruptedError)
    lines = [
        _source_line(settings, database),
        _("Result: INTERRUPTED") if interrupted else _("Result: BACKUP FAILED"),
        _("Error: {error}").format(error=report.error),
        _("Duration: {duration}").format(duration=format_duration(report.duration_seconds)),
        _("Backup folder: {folder}").format(folder=settings.folder.resolve()),
        "",
        _("Last log lines:"),
        log_tail or _("(none)"),
    ]
    if interrupted:
        subject = _("[auditctl] Backup of {database} INTERRUPTED").format(database=database)
    else:
        subject = _("[auditctl] Backup of {database} FAILED").format(database=database)
    return MailReport(subject, "\n".join(lines) + "\n")


def _source_line(settings: BackupSettings, database: str) -> str:
    """Name the source: the database, or the endpoint's URL without credentials and query."""
    if settings.from_url:
        return _("Source: {url}").format(url=url_identity(settings.from_url)["url"])
    return _("Database: {database}").format(database=database)


def database_label(settings: BackupSettings) -> str:
    """Name the database of a run that may have failed before connecting: from the DSN, PGDATABASE or the URL."""
    if settings.from_url:
        return UrlSource(settings.from_url).name
    text = resolve_dsn(settings.dsn).dsn
    try:
        params = conninfo.conninfo_to_dict(text) if text else {}
    except psycopg.ProgrammingError:
        params = {}
    return params.get("dbname") or os.environ.get("PGDATABASE") or describe_dsn(text)
