"""Backup settings from a TOML file, overridden by the flags typed on the command line.

The file is ``--config PATH``, else ``./auditctl.toml``, else
``~/.config/auditctl/config.toml``; none at all is fine. ``auditctl.example.toml``
at the top of the repository documents every key.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..i18n import _

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATHS = (Path("auditctl.toml"), Path("~/.config/auditctl/config.toml"))
MEBIBYTE = 1024 * 1024


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


def find_config(explicit: Path | None) -> Path | None:
    """Return the config file to read: the explicit one (which must exist) or the first default that exists."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(_("Config file {path} does not exist.").format(path=explicit))
        return explicit
    for candidate in DEFAULT_CONFIG_PATHS:
        path = candidate.expanduser()
        if path.is_file():
            return path
    return None


def _convert(table: str, key: str, value: Any, kind: Any, base: Path) -> Any:
    def invalid(expected: str) -> ConfigError:
        return ConfigError(_("Invalid value for {key} in [{table}]: expected {expected}, got {value!r}.")
                           .format(key=key, table=table, expected=expected, value=value))

    if kind is bool:
        if not isinstance(value, bool):
            raise invalid("true or false")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise invalid(_("a whole number of 0 or more"))
        return value
    if kind in (float, "mb", "hours"):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise invalid(_("a number above 0"))
        if kind == "mb":
            return int(value * MEBIBYTE)
        if kind == "hours":
            return int(value * 3600)
        return float(value)
    if kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise invalid(_("a list of strings"))
        return tuple(value)
    if not isinstance(value, str) or not value:
        raise invalid(_("a non-empty string"))
    if kind is Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path
    return value


def _read_table(data: dict[str, Any], table: str, keys: dict[str, tuple[str, Any]], base: Path) -> dict[str, Any]:
    section = data
    for part in table.split("."):
        section = section.get(part, {}) if isinstance(section, dict) else {}
    if not isinstance(section, dict):
        raise ConfigError(_("[{table}] in the config file must be a table.").format(table=table))
    nested = {name for name, value in section.items() if isinstance(value, dict)}
    unknown = sorted(set(section) - set(keys) - nested)
    if unknown:
        raise ConfigError(_("Unknown key {key} in [{table}]; see auditctl.example.toml for the valid keys.")
                          .format(key=unknown[0], table=table))
    return {target: _convert(table, key, section[key], kind, base)
            for key, (target, kind) in keys.items() if key in section}


def load_settings(path: Path | None, overrides: dict[str, Any]) -> BackupSettings:
    """Read the config file (if any) and apply ``overrides``: the flags the user typed, never defaults."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(_("Cannot read config file {path}: {error}").format(path=path, error=exc.strerror)) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(_("Invalid TOML in {path}: {error}").format(path=path, error=exc)) from None
        logger.debug("read settings from %s", path)
    base = path.resolve().parent if path is not None else Path.cwd()
    values: dict[str, Any] = {"config_path": path}
    for table, keys in (("backup", _BACKUP_KEYS), ("backup.rotation", _ROTATION_KEYS),
                        ("backup.encryption", _ENCRYPTION_KEYS), ("backup.source", _SOURCE_KEYS),
                        ("backup.monitoring", _MONITORING_KEYS)):
        values.update(_read_table(data, table, keys, base))
    mail = _read_table(data, "mail", _MAIL_KEYS, base)
    storage = _read_table(data, "storage", _STORAGE_KEYS, base)

    mail_overrides = {key[len("mail."):]: value for key, value in overrides.items() if key.startswith("mail.")}
    mail.update(mail_overrides)
    if mail:
        if not mail.get("to") or not mail.get("sender"):
            raise ConfigError(_("[mail] needs both `to` (one or more addresses) and `from`."))
        values["mail"] = MailSettings(**mail)
    if storage:
        if not storage.get("bucket"):
            raise ConfigError(_("[storage] needs `bucket`."))
        values["storage"] = StorageSettings(**storage)
    if "dsn" in values and "dsn" not in overrides:
        values["dsn_origin"] = str(path)
    settings = BackupSettings(**values)
    plain = {key: value for key, value in overrides.items() if not key.startswith("mail.")}
    valid = {item.name for item in fields(BackupSettings)}
    return replace(settings, **{key: value for key, value in plain.items() if key in valid})
