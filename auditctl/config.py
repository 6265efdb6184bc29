"""The TOML settings file that the backup and audit commands share.

The file is ``--config PATH``, else ``./auditctl.toml``, else
``~/.config/auditctl/config.toml``; none at all is fine. ``auditctl.example.toml``
at the top of the repository documents every key. Each command group reads
its own tables of the file and checks only those keys.
"""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .i18n import _

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATHS = (Path("auditctl.toml"), Path("~/.config/auditctl/config.toml"))
MEBIBYTE = 1024 * 1024

# Top-level tables that some command reads; any other name is a typo.
KNOWN_TABLES = ("audit", "backup", "mail", "storage")

# A TOML key and its conversion: (settings field, expected type).
KeyMap = dict[str, tuple[str, Any]]


def find_config(explicit: Path | None) -> Path | None:
    """Return the config file to read: the explicit one (which must exist) or the first default that exists."""
    if explicit is not None:
        if explicit.is_dir():
            raise ConfigError(_("Config file {path} is a folder; pass the path of a TOML file.").format(path=explicit))
        if not explicit.is_file():
            raise ConfigError(_("Config file {path} does not exist.").format(path=explicit))
        return explicit
    for candidate in DEFAULT_CONFIG_PATHS:
        path = candidate.expanduser()
        if path.is_file():
            return path
    return None


def read_config(path: Path | None) -> dict[str, Any]:
    """Parse the config file; an empty dict when there is none."""
    if path is None:
        return {}
    try:
        # Some editors save UTF-8 with a byte-order mark, which tomllib rejects as invalid TOML.
        data = tomllib.loads(path.read_bytes().decode("utf-8").removeprefix("\ufeff"))
    except UnicodeDecodeError:
        raise ConfigError(_("Config file {path} is not UTF-8 text; save it as UTF-8.").format(path=path)) from None
    except OSError as exc:
        raise ConfigError(_("Cannot read config file {path}: {error}").format(path=path, error=exc.strerror)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_("Invalid TOML in {path}: {error}").format(path=path, error=exc)) from None
    unknown = sorted(set(data) - set(KNOWN_TABLES))
    if unknown:
        raise ConfigError(_("Unknown table [{table}] in {path}; see auditctl.example.toml for the valid tables.")
                          .format(table=unknown[0], path=path))
    logger.debug("read settings from %s", path)
    return data


def config_folder(path: Path | None) -> Path:
    """Return the folder that relative paths in the config file are read from."""
    return path.resolve().parent if path is not None else Path.cwd()


def toml_spelling(value: Any) -> str:
    """Write a parsed TOML value back as TOML would spell it: true, "text", [1, 2], for quoting it in errors."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A JSON string is also a valid TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_spelling(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {toml_spelling(item)}" for key, item in value.items()) + "}"
    return str(value)


def invalid_value_error(table: str, key: str, path: Path | None, expected: str, value: Any) -> ConfigError:
    """Return the error about ``key`` in ``[table]`` of the file ``path``, quoting ``value`` as TOML spells it."""
    return ConfigError(_("Invalid value for {key} in [{table}] of {path}: expected {expected}, got {value}.")
                       .format(key=key, table=table, path=path, expected=expected, value=toml_spelling(value)))


def convert_value(table: str, key: str, value: Any, kind: Any, path: Path | None,
                  expected: str | None = None) -> Any:
    """Check one value of the file ``path`` against its expected type and convert it.

    MiB and hours become bytes and seconds; relative paths are read from the
    file's folder. ``expected``, when given, describes the valid values in
    place of the type's generic description, so that a value of the wrong
    type and one out of range get the same message.
    """
    def invalid(generic: str) -> ConfigError:
        return invalid_value_error(table, key, path, expected or generic, value)

    if kind is bool:
        if not isinstance(value, bool):
            # TOML spells its booleans true and false in every language, so only the "or" is translated.
            raise invalid(_("true or false"))
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
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise invalid(_("a list of strings"))
        return tuple(value)
    if not isinstance(value, str) or not value:
        raise invalid(_("a non-empty string"))
    if kind is Path:
        value_path = Path(value).expanduser()
        return value_path if value_path.is_absolute() else config_folder(path) / value_path
    return value


def config_table(data: dict[str, Any], table: str, path: Path | None) -> dict[str, Any]:
    """Return the table at a dotted path such as ``backup.rotation``; an empty dict when it is absent."""
    section: Any = data
    for part in table.split("."):
        section = section.get(part, {}) if isinstance(section, dict) else {}
    if not isinstance(section, dict):
        raise not_a_table_error(table, path)
    return section


def not_a_table_error(table: str, path: Path | None) -> ConfigError:
    """Return the error about a key of the file ``path`` that should be the table ``[table]``."""
    return ConfigError(_("[{table}] in {path} must be a table.").format(table=table, path=path))


def read_table(data: dict[str, Any], table: str, keys: KeyMap, path: Path | None,
               subtables: tuple[str, ...] = (), expected: dict[str, str] | None = None) -> dict[str, Any]:
    """Read and convert the keys of one table of the file ``path``; ``subtables`` names the tables it may contain."""
    return convert_table(config_table(data, table, path), table, keys, path, subtables, expected)


def convert_table(section: dict[str, Any], table: str, keys: KeyMap, path: Path | None,
                  subtables: tuple[str, ...] = (), expected: dict[str, str] | None = None) -> dict[str, Any]:
    """Convert the keys of a table already looked up; ``table`` and ``path`` name it in errors.

    ``expected`` maps a key to the description of its valid values, for keys
    whose rule is narrower than their type.
    """
    expected = expected or {}
    unknown = sorted(set(section) - set(keys) - set(subtables))
    if unknown:
        raise ConfigError(_("Unknown key {key} in [{table}] of {path}; see auditctl.example.toml for the valid keys.")
                          .format(key=unknown[0], table=table, path=path))
    return {target: convert_value(table, key, section[key], kind, path, expected.get(key))
            for key, (target, kind) in keys.items() if key in section}


def located_error(error: Exception, table: str, path: Path | str | None) -> ConfigError:
    """Add the config table and file that a value came from to the error about it."""
    return ConfigError(_("{error} Correct it in [{table}] of {path}.").format(error=error, table=table, path=path))
