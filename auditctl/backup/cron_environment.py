"""The environment variables of the backup's crontab line, and warnings about the ones cron will not have.

cron starts a job with little more than HOME, LOGNAME, SHELL and a minimal
PATH. The line therefore sets the locale and CA certificate variables of the
environment that ``cron install`` runs in, and those named by ``--env``. It
never sets one that contains a secret, because a crontab is read by its
owner's tools and copied into backups.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

import psycopg
from psycopg import conninfo

from ..db import dsn_has_password
from ..errors import InvalidArgumentError
from ..i18n import _, ngettext
from .config import BackupSettings
from .storage import keys_in_files

# Copied into the line whenever they are set: the language of messages and mail, and the CA
# certificates that Python's ssl module trusts for SMTP.
AUTOMATIC_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG", "SSL_CERT_FILE", "SSL_CERT_DIR")

# Without any LANG, Python and pg_dump would start in the C locale.
DEFAULT_LANG = "C.UTF-8"

# Variables that contain the DSN when the config file sets none.
_DSN_VARIABLES = ("AUDITCTL_DSN", "DATABASE_URL")
# libpq's variables, each read for the connection keyword that the DSN leaves out (None: no keyword).
_LIBPQ_VARIABLES = {
    "PGHOST": "host", "PGHOSTADDR": "hostaddr", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user",
    "PGSERVICE": "service", "PGSERVICEFILE": None, "PGPASSFILE": "passfile", "PGSSLMODE": "sslmode",
    "PGSSLROOTCERT": "sslrootcert",
}
# Shell words after which the next words may again be variable assignments.
_COMMAND_SEPARATORS = {"&&", "||", ";", "|", "&", "export", "env"}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Parts of a variable name that mark it as a secret, matched within the name ...
_SECRET_SUBSTRINGS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "APIKEY", "PRIVATE")
# ... and as a whole word between underscores (PGPASSFILE and PGSSLKEY name files, not secrets).
_SECRET_WORDS = {"PASS", "KEY", "AUTH", "COOKIE"}
# Last words that make the name that of a location, such as SSH_AUTH_SOCK or AWS_SHARED_CREDENTIALS_FILE.
_LOCATION_WORDS = {"FILE", "PATH", "DIR", "SOCK", "SOCKET"}
# A URL with a password in it, such as https://user:password@host/.
_URL_PASSWORD = re.compile(r"://[^/\s@]*:[^/\s@]*@")


def carried_variables(requested: Sequence[str], environment: Mapping[str, str],
                      settings: BackupSettings) -> dict[str, str]:
    """Return the variables the line sets: LANG, the automatic ones that are set, then each ``--env``.

    Each item of ``requested`` is NAME, which copies the value from
    ``environment``, or NAME=VALUE. Raises InvalidArgumentError for a name
    that is not set, and for a variable that contains a secret or cannot be
    written into a crontab.
    """
    variables = {"LANG": DEFAULT_LANG}
    variables.update({name: environment[name] for name in AUTOMATIC_VARIABLES if environment.get(name)})
    secret_names = config_secret_names(settings)
    for request in requested:
        name, separator, value = request.partition("=")
        if not _NAME.match(name):
            raise InvalidArgumentError(
                _("Invalid --env {value!r}: give a variable name, such as SSL_CERT_FILE, or NAME=VALUE.")
                .format(value=request))
        # Check the name first, so that an unset secret never gets the advice "pass --env NAME=VALUE".
        _check_name_not_secret(name, secret_names)
        if not separator:
            value = _value_from_environment(name, environment)
        _check_value(name, value)
        variables[name] = value
    return variables


def _value_from_environment(name: str, environment: Mapping[str, str]) -> str:
    value = environment.get(name, "")
    if not value:
        raise InvalidArgumentError(
            _("--env {name}: {name} is not set in this environment; set it, or pass --env {name}=VALUE.")
            .format(name=name))
    return value


def _check_name_not_secret(name: str, secret_names: Mapping[str, str]) -> None:
    if name in secret_names:
        raise InvalidArgumentError(
            _("--env {name}: the config file names {name} in {key}, so it contains a secret, and auditctl "
              "never writes secrets into the crontab. Put the secret in a file of mode 0600 instead.")
            .format(name=name, key=secret_names[name]))
    if looks_secret(name):
        raise InvalidArgumentError(
            _("--env {name}: the name looks like a secret, and auditctl never writes secrets into the crontab. "
              "Put the secret in a file of mode 0600 instead.").format(name=name))


def _check_value(name: str, value: str) -> None:
    if any(character in value for character in "\n\r\0"):
        raise InvalidArgumentError(
            _("--env {name}: the value contains a line break, which a crontab line cannot contain.").format(name=name))
    if dsn_has_password(value) or _URL_PASSWORD.search(value):
        raise InvalidArgumentError(
            _("--env {name}: the value contains a password, which would be written into the crontab. Remove it "
              "and keep the password in ~/.pgpass (mode 0600).").format(name=name))


def looks_secret(name: str) -> bool:
    """Tell whether a variable name reads like the name of a password, key or token, not of where one is kept."""
    upper = name.upper()
    words = upper.split("_")
    if words[-1] in _LOCATION_WORDS:
        return False
    return any(part in upper for part in _SECRET_SUBSTRINGS) or bool(_SECRET_WORDS & set(words))


def config_secret_names(settings: BackupSettings) -> dict[str, str]:
    """Map each environment variable that the config file reads a secret from to the key that names it."""
    names = {}
    if settings.mail is not None and settings.mail.password_env:
        names[settings.mail.password_env] = "password_env"
    if settings.header_env:
        names[settings.header_env] = "header_env"
    if settings.storage is not None:
        names[settings.storage.access_key_env] = "access_key_env"
        names[settings.storage.secret_key_env] = "secret_key_env"
    return names


def environment_warnings(settings: BackupSettings, environment: Mapping[str, str], carried: Mapping[str, str],
                         working_dir: Path) -> list[str]:
    """List what will differ under cron from ``auditctl backup`` run in ``environment``, one message each."""
    warnings = _secret_warnings(settings, environment)
    missing = [name for name in _settings_variables(settings) if environment.get(name) and name not in carried]
    if missing:
        warnings.append(
            ngettext("This environment sets {names}, which the cron job will not have, so it would run differently "
                     "from `auditctl backup` here; pass --env {names}, or set it in the config file.",
                     "This environment sets {names}, which the cron job will not have, so it would run differently "
                     "from `auditctl backup` here; pass --env NAME for each, or set them in the config file.",
                     len(missing))
            .format(names=", ".join(missing)))
    if not settings.folder.is_absolute() and "AUDITCTL_BACKUP_DIR" not in carried:
        warnings.append(
            _("The config file sets no dir, so the cron job writes its backups into {folder}, the folder it "
              "changes into; set dir in [backup] to choose another.").format(folder=working_dir))
    return warnings


def _secret_warnings(settings: BackupSettings, environment: Mapping[str, str]) -> list[str]:
    warnings = []
    if settings.mail is not None and settings.mail.password_env:
        warnings.append(
            _("cron will not set {name} (password_env in [mail]), so the mail login will fail; put the password "
              "in a file of mode 0600, set password_file and remove password_env.")
            .format(name=settings.mail.password_env))
    if settings.header_env:
        warnings.append(
            _("cron will not set {name} (header_env in [backup.source]), so the request to the backup endpoint "
              "will fail; put the header line in a file of mode 0600, set header_file and remove header_env.")
            .format(name=settings.header_env))
    if settings.storage is not None and not keys_in_files(settings.storage):
        warnings.append(
            _("cron will not set {access} and {secret} (the keys of [storage]), so uploads will fail; put the keys "
              "in ~/.aws/credentials of this user (mode 0600), which the cron job reads.")
            .format(access=settings.storage.access_key_env, secret=settings.storage.secret_key_env))
    if environment.get("PGPASSWORD"):
        warnings.append(
            _("cron will not set PGPASSWORD, and auditctl never writes passwords into the crontab; put the "
              "password in ~/.pgpass (mode 0600) of this user."))
    return warnings


def _settings_variables(settings: BackupSettings) -> list[str]:
    """Return the variables, other than secrets, that change where this backup goes and what it dumps."""
    names = ["AUDITCTL_BACKUP_DIR"]
    if settings.from_url:
        return names
    if not settings.dsn:
        names.extend(_DSN_VARIABLES)
    dsn_keywords = _dsn_keywords(settings.dsn)
    names.extend(name for name, keyword in _LIBPQ_VARIABLES.items() if keyword not in dsn_keywords)
    return names


def _dsn_keywords(dsn: str | None) -> set[str]:
    if not dsn:
        return set()
    try:
        return set(conninfo.conninfo_to_dict(dsn))
    except psycopg.ProgrammingError:
        return set()


def assigned_names(line: str) -> list[str]:
    """Return the names of the variables that a crontab line assigns, in order; [] when it cannot be parsed."""
    return list(assigned_variables(line))


def assigned_variables(line: str) -> dict[str, str]:
    """Return the variables that a crontab line assigns and their values, unquoted; {} when it cannot be parsed.

    Only assignments in front of a command count, as the shell reads them, so
    a ``dbname=app`` inside a quoted argument is not one. A name assigned
    twice keeps its first value.
    """
    fields = line.split(maxsplit=1 if line.startswith("@") else 5)
    command = fields[-1].replace("\\%", "%")
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:
        return {}
    variables: dict[str, str] = {}
    at_command_start = True
    for word in words:
        name, separator, value = word.partition("=")
        if at_command_start and separator and _NAME.match(name):
            variables.setdefault(name, value)
        else:
            at_command_start = word in _COMMAND_SEPARATORS
    return variables
