"""Backup settings from the config file, overridden by the flags typed on the command line.

``auditctl.config`` finds and parses the file; this module reads its
``[backup]``, ``[mail]`` and ``[storage]`` tables.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..config import MEBIBYTE, KeyMap, config_table, invalid_value_error, read_config, read_table
from ..errors import ConfigError, InvalidArgumentError
from ..i18n import _
from .config_values import FLAG_NAMES, describe_valid, find_invalid
from .encryption import recipients_with_passphrase_error
from .urls import credentials_message, has_credentials


@dataclass(frozen=True)
class MailSettings:
    """The ``[mail]`` table: how and to whom the report is sent."""

    to: tuple[str, ...]
    sender: str
    transport: str = "smtp"
    host: str = "localhost"
    port: int | None = None
    security: str = "starttls"
    username: str | None = None
    password_env: str | None = None
    password_file: Path | None = None
    allow_plaintext_auth: bool = False
    sendmail_command: str = "/usr/sbin/sendmail"
    max_attachment_bytes: int = 20 * MEBIBYTE
    timeout_seconds: float = 60.0
    log_lines: int = 40


@dataclass(frozen=True)
class StorageSettings:
    """The ``[storage]`` table: an S3-compatible bucket for files too large to attach."""

    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    prefix: str = ""
    access_key_env: str = "AWS_ACCESS_KEY_ID"
    secret_key_env: str = "AWS_SECRET_ACCESS_KEY"
    # Profile of the shared credentials file, read when the two variables above are unset.
    profile: str | None = None
    link_expires_seconds: int = 7 * 24 * 3600


@dataclass(frozen=True)
class BackupSettings:
    """Everything one ``auditctl backup`` run needs."""

    folder: Path = Path(".")
    dsn: str | None = None
    dsn_origin: str = "--dsn"
    dump_format: str = "custom"
    jobs: int = 1
    compress: int | None = None
    with_globals: bool = False
    pg_bindir: Path | None = None
    audit_schema: str = "audit"
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    recipients: tuple[str, ...] = ()
    recipients_file: Path | None = None
    identity_file: Path | None = None
    passphrase_file: Path | None = None
    from_url: str | None = None
    header_env: str | None = None
    header_file: Path | None = None
    url_timeout_seconds: float = 300.0
    max_body_bytes: int = 512 * MEBIBYTE
    heartbeat_url: str | None = None
    metrics_file: Path | None = None
    mail: MailSettings | None = None
    storage: StorageSettings | None = None
    config_path: Path | None = None
    # Settings fields whose values come from the config file, not from a typed flag, to name them in errors.
    file_fields: frozenset[str] = frozenset()


# TOML key -> (settings field, expected type) for each table.
_BACKUP_KEYS = {
    "dir": ("folder", Path), "dsn": ("dsn", str), "format": ("dump_format", str), "jobs": ("jobs", int),
    "compress": ("compress", int), "globals": ("with_globals", bool), "pg_bindir": ("pg_bindir", Path),
    "audit_schema": ("audit_schema", str),
}
_BACKUP_SUBTABLES = ("rotation", "encryption", "source", "monitoring")
_ROTATION_KEYS = {"keep_last": ("keep_last", int), "keep_daily": ("keep_daily", int),
                  "keep_weekly": ("keep_weekly", int), "keep_monthly": ("keep_monthly", int)}
_ENCRYPTION_KEYS = {"recipients": ("recipients", list), "recipients_file": ("recipients_file", Path),
                    "identity_file": ("identity_file", Path), "passphrase_file": ("passphrase_file", Path)}
_SOURCE_KEYS = {"url": ("from_url", str), "header_env": ("header_env", str), "header_file": ("header_file", Path),
                "timeout_seconds": ("url_timeout_seconds", float), "max_body_mb": ("max_body_bytes", "mb")}
_MONITORING_KEYS = {"heartbeat_url": ("heartbeat_url", str), "metrics_file": ("metrics_file", Path)}
_MAIL_KEYS = {
    "to": ("to", list), "from": ("sender", str), "transport": ("transport", str), "host": ("host", str),
    "port": ("port", int), "security": ("security", str), "username": ("username", str),
    "password_env": ("password_env", str), "password_file": ("password_file", Path),
    "allow_plaintext_auth": ("allow_plaintext_auth", bool), "sendmail_command": ("sendmail_command", str),
    "max_attachment_mb": ("max_attachment_bytes", "mb"), "timeout_seconds": ("timeout_seconds", float),
    "log_lines": ("log_lines", int),
}
_STORAGE_KEYS = {
    "bucket": ("bucket", str), "endpoint_url": ("endpoint_url", str), "region": ("region", str),
    "prefix": ("prefix", str), "access_key_env": ("access_key_env", str), "secret_key_env": ("secret_key_env", str),
    "profile": ("profile", str), "link_expires_hours": ("link_expires_seconds", "hours"),
}


# Keys that would put a secret into the file, and the keys that name where the secret is kept instead.
_SECRET_KEYS = {("mail", "password"): "password_env / password_file",
                ("backup.source", "header"): "header_env / header_file",
                ("storage", "access_key"): "access_key_env / profile",
                ("storage", "secret_key"): "secret_key_env / profile"}


def load_settings(path: Path | None, overrides: dict[str, Any]) -> BackupSettings:
    """Read the config file (if any) and apply ``overrides``: the flags the user typed, never defaults.

    Every value is checked here, so a bad one stops the command before any work.
    ``check_dump_options`` checks how the dump options combine.
    """
    data = read_config(path)
    values: dict[str, Any] = {"config_path": path}
    values.update(_read_checked(data, "backup", _BACKUP_KEYS, path, _BACKUP_SUBTABLES))
    for table, keys in (("backup.rotation", _ROTATION_KEYS), ("backup.encryption", _ENCRYPTION_KEYS),
                        ("backup.source", _SOURCE_KEYS), ("backup.monitoring", _MONITORING_KEYS)):
        values.update(_read_checked(data, table, keys, path))
    mail = _read_checked(data, "mail", _MAIL_KEYS, path)
    storage = _read_checked(data, "storage", _STORAGE_KEYS, path)

    for field_name, value in overrides.items():
        _check_flag(field_name.removeprefix("mail."), value)
    mail_overrides = {key[len("mail."):]: value for key, value in overrides.items() if key.startswith("mail.")}
    mail.update(mail_overrides)
    if mail:
        if path is None:
            raise ConfigError(_("--mail-to needs the [mail] settings of a config file, `from` at least, but no "
                                "config file was found. Pass --config FILE, or copy auditctl.example.toml to "
                                "./auditctl.toml and fill in [mail]."))
        if not mail.get("to") or not mail.get("sender"):
            raise ConfigError(_("[mail] in {path} needs both `to` (one or more addresses) and `from`.")
                              .format(path=path))
        values["mail"] = MailSettings(**mail)
        _check_mail_login(values["mail"], path)
    if storage:
        if not storage.get("bucket"):
            raise ConfigError(_("[storage] in {path} needs `bucket`.").format(path=path))
        values["storage"] = StorageSettings(**storage)
    if "dsn" in values and "dsn" not in overrides:
        values["dsn_origin"] = str(path)
    values["file_fields"] = frozenset(set(values) - set(overrides) - {"config_path", "mail", "storage"})
    settings = BackupSettings(**values)
    plain = {key: value for key, value in overrides.items() if not key.startswith("mail.")}
    valid = {item.name for item in fields(BackupSettings)}
    return replace(settings, **{key: value for key, value in plain.items() if key in valid})


def _read_checked(data: dict[str, Any], table: str, keys: KeyMap, path: Path | None,
                  subtables: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read one table like ``read_table``, then check each value against its rule in ``config_values``."""
    section = config_table(data, table, path)
    for (secret_table, key), alternatives in _SECRET_KEYS.items():
        if secret_table == table and key in section:
            raise ConfigError(_("Unknown key {key} in [{table}] of {path}: the config file must not contain "
                                "secrets. Name the environment variable or the file of mode 0600 that contains it "
                                "with {alternatives}.").format(key=key, table=table, path=path,
                                                          alternatives=alternatives))
    # A value of the wrong type gets the rule's description too, so each key names one valid range.
    descriptions = {key: describe_valid(field_name) for key, (field_name, _kind) in keys.items()}
    expected = {key: text for key, text in descriptions.items() if text is not None}
    values = read_table(data, table, keys, path, subtables, expected)
    for key, (field_name, _kind) in keys.items():
        if key not in section:
            continue
        invalid = find_invalid(field_name, values[field_name], section[key])
        if invalid is not None and invalid.quoted_value is None:
            raise ConfigError(_("Invalid value for {key} in [{table}] of {path}: expected {expected}.")
                              .format(key=key, table=table, path=path, expected=invalid.expected))
        if invalid is not None:
            raise invalid_value_error(table, key, path, invalid.expected, invalid.quoted_value)
        if field_name == "from_url" and has_credentials(values[field_name]):
            raise ConfigError(credentials_message(_("url in [{table}] of {path}").format(table=table, path=path)))
    return values


def _check_flag(field_name: str, value: Any) -> None:
    """Check a value typed on the command line against the rule of its settings field."""
    flag = FLAG_NAMES.get(field_name, field_name)
    invalid = find_invalid(field_name, value)
    if invalid is not None and invalid.quoted_value is None:
        raise InvalidArgumentError(_("Invalid value for {option}: expected {expected}.").format(
            option=flag, expected=invalid.expected))
    if invalid is not None:
        raise InvalidArgumentError(_("Invalid value for {option}: expected {expected}, got {value!r}.").format(
            option=flag, expected=invalid.expected, value=invalid.quoted_value))
    if field_name == "from_url" and has_credentials(value):
        raise InvalidArgumentError(credentials_message(flag))


def _check_mail_login(mail: MailSettings, path: Path | None) -> None:
    """Reject SMTP login settings that could never work: a password without a user, or one sent in the clear."""
    has_password = mail.password_env is not None or mail.password_file is not None
    if mail.transport != "smtp" or not has_password:
        return
    if not mail.username:
        raise ConfigError(_("[mail] in {path} names a password (password_env or password_file) but no username; "
                            "set username too.").format(path=path))
    if mail.security == "none" and not mail.allow_plaintext_auth:
        raise ConfigError(
            _("Refusing to send the SMTP password over an unencrypted connection to {host} (security = \"none\" in "
              "[mail] of {path}). Use security = \"tls\" or \"starttls\", or set allow_plaintext_auth = true if "
              "the link is trusted.").format(host=mail.host, path=path))


def check_dump_options(settings: BackupSettings) -> None:
    """Reject combinations of dump options that pg_dump or age cannot carry out, before a backup run starts.

    ``backup verify`` and ``backup restore`` skip this check, because they
    read the encryption keys only to decrypt.
    """
    if settings.jobs > 1 and settings.dump_format != "directory":
        raise _jobs_need_directory_error(settings)
    if (settings.recipients or settings.recipients_file) and settings.passphrase_file:
        raise recipients_with_passphrase_error()
    encrypted = bool(settings.recipients or settings.recipients_file or settings.passphrase_file)
    if settings.dump_format == "directory" and encrypted and not settings.from_url:
        raise InvalidArgumentError(
            _("The directory format cannot be encrypted; use the custom format with encryption."))



def _jobs_need_directory_error(settings: BackupSettings) -> InvalidArgumentError:
    """Return the error about jobs above 1 without the directory format, naming the keys that came from the file."""
    if "jobs" in settings.file_fields:
        return InvalidArgumentError(
            _("jobs = {jobs} in [backup] of {path} needs format = \"directory\", because pg_dump dumps in parallel "
              "only in that format. Set format = \"directory\" or jobs = 1 there.").format(
                jobs=settings.jobs, path=settings.config_path))
    if "dump_format" in settings.file_fields:
        return InvalidArgumentError(
            _("--jobs above 1 needs the directory format, because pg_dump dumps in parallel only in that format, but "
              "format in [backup] of {path} is \"{format}\". Pass --format directory as well, or set "
              "format = \"directory\" there.").format(path=settings.config_path, format=settings.dump_format))
    return InvalidArgumentError(_("--jobs above 1 needs --format directory (pg_dump dumps in parallel only there)."))
