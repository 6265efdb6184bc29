"""Backup settings from the config file, overridden by the flags typed on the command line.

``auditctl.config`` finds and parses the file; this module reads its
``[backup]``, ``[mail]`` and ``[storage]`` tables.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..config import MEBIBYTE, read_config, read_table
from ..errors import ConfigError
from ..i18n import _


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
    "link_expires_hours": ("link_expires_seconds", "hours"),
}


def load_settings(path: Path | None, overrides: dict[str, Any]) -> BackupSettings:
    """Read the config file (if any) and apply ``overrides``: the flags the user typed, never defaults."""
    data = read_config(path)
    values: dict[str, Any] = {"config_path": path}
    values.update(read_table(data, "backup", _BACKUP_KEYS, path, _BACKUP_SUBTABLES))
    for table, keys in (("backup.rotation", _ROTATION_KEYS), ("backup.encryption", _ENCRYPTION_KEYS),
                        ("backup.source", _SOURCE_KEYS), ("backup.monitoring", _MONITORING_KEYS)):
        values.update(read_table(data, table, keys, path))
    mail = read_table(data, "mail", _MAIL_KEYS, path)
    storage = read_table(data, "storage", _STORAGE_KEYS, path)

    mail_overrides = {key[len("mail."):]: value for key, value in overrides.items() if key.startswith("mail.")}
    mail.update(mail_overrides)
    if mail:
        if not mail.get("to") or not mail.get("sender"):
            raise ConfigError(_("[mail] in {path} needs both `to` (one or more addresses) and `from`.")
                              .format(path=path or _("the config file")))
        values["mail"] = MailSettings(**mail)
    if storage:
        if not storage.get("bucket"):
            raise ConfigError(_("[storage] in {path} needs `bucket`.").format(path=path))
        values["storage"] = StorageSettings(**storage)
    if "dsn" in values and "dsn" not in overrides:
        values["dsn_origin"] = str(path)
    settings = BackupSettings(**values)
    plain = {key: value for key, value in overrides.items() if not key.startswith("mail.")}
    valid = {item.name for item in fields(BackupSettings)}
    return replace(settings, **{key: value for key, value in plain.items() if key in valid})
