"""Errors that auditctl reports to people.

Every message is already translated and names what failed, on which value,
and what to do next; the CLI prints it as one line and exits non-zero.
"""


class AuditctlError(Exception):
    """Base class of the errors auditctl reports without a traceback."""

    exit_code = 1


class AuditctlWarning(UserWarning):
    """A problem that did not stop the command, issued with ``warnings.warn``; the message is translated.

    The library prints nothing, so the CLI shows these warnings as one line
    each, and Python's default filter shows each text once per process.
    """


class InvalidArgumentError(AuditctlError):
    """A command-line value or option combination is invalid."""

    exit_code = 2


class OutputFileError(InvalidArgumentError):
    """A file named on the command line, or its folder, cannot be written."""


class ConnectionFailedError(AuditctlError):
    """The database could not be reached or refused the login."""


class ServerVersionError(AuditctlError):
    """The PostgreSQL server is older than auditctl supports."""


class TableNotFoundError(AuditctlError):
    """A table named on the command line does not exist or is ambiguous."""


class AmbiguousTableError(TableNotFoundError):
    """A table name written without quotes matches several tables, such as film and "Film"."""


class NotInstalledError(AuditctlError):
    """The audit schema is missing in the target database."""


class DatabaseError(AuditctlError):
    """A statement failed on the server."""


class EmbeddedServerError(AuditctlError):
    """The embedded PostgreSQL server could not be started."""


class BackupError(AuditctlError):
    """A backup, verification or restore failed; no partial file is left under a final name."""


class PgToolNotFoundError(BackupError):
    """No pg_dump, pg_restore or pg_dumpall of a suitable major version was found."""


class BackupLockedError(BackupError):
    """Another backup run holds the lock of the backup folder."""

    # EX_TEMPFAIL from sysexits.h: cron wrappers can tell "try later" from a failure.
    exit_code = 75


class BackupInterruptedError(BackupError):
    """SIGTERM or SIGINT stopped a backup run; the exit code is 128 plus the signal number, as a shell reports it."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class DeliveryError(BackupError):
    """Mail or storage delivery failed; the backup file itself is kept."""

    exit_code = 3


class StatusProblemsError(AuditctlError):
    """status found audited tables whose changes are not recorded, or recorded in clear against a rule."""

    # The report itself is complete, as the backup is with DeliveryError, so monitoring can tell this from a failed run.
    exit_code = 3


class ConfigError(InvalidArgumentError):
    """The configuration file is missing, unreadable or contains an invalid value."""


class EventNotFoundError(AuditctlError):
    """An event or transaction id names nothing in the audit log."""


class RevertRefusedError(AuditctlError):
    """An event cannot be reverted at all, such as a TRUNCATE or one whose old values were masked."""


class RevertConflictError(AuditctlError):
    """The row changed since the event, so reverting it would lose a later change."""


class PermissionDeniedError(AuditctlError):
    """The connected role may not perform the action."""
