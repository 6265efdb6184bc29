"""The ``[audit]`` table of the config file: what ``install`` audits and how it treats columns.

``auditctl.config`` finds and parses the file. A flag typed on the command
line overrides the matching key; the CLI passes only the flags it was given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..config import config_table, convert_table, located_error, not_a_table_error, read_config, read_table
from ..errors import ConfigError, InvalidArgumentError
from ..i18n import _
from .catalog import QuotedName, split_qualified_name
from .ddl import AutoAuditPolicy
from .rules import Rule, RuleRequest

# Schemas that the auto-audit policy covers when neither the file nor a flag names any.
DEFAULT_AUTO_SCHEMAS = ("public",)


@dataclass(frozen=True)
class AuditSettings:
    """Defaults of ``auditctl install`` from the config file, with the typed flags applied."""

    schemas: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    auto_audit: bool | None = None
    max_value_bytes: int | None = None
    app_role: str | None = None
    viewer_role: str | None = None
    column_rules: tuple[RuleRequest, ...] = ()
    # The file whose [audit] table was read; None when the file has none.
    config_path: Path | None = None

    def auto_audit_policy(self, schemas: tuple[str, ...] = (),
                          exclude: tuple[str, ...] = ()) -> AutoAuditPolicy | None | bool:
        """Return the policy to store for new tables, in the form ``install()`` takes.

        ``schemas`` and ``exclude`` come from --auto-schema and --auto-exclude and
        replace the file's lists when given. True means: keep the stored policy.
        """
        if self.auto_audit is None:
            return True
        if not self.auto_audit:
            return None
        return AutoAuditPolicy(schemas or self.schemas or DEFAULT_AUTO_SCHEMAS, exclude or self.exclude)


_AUDIT_KEYS = {
    "schemas": ("schemas", list), "exclude": ("exclude", list), "auto_audit": ("auto_audit", bool),
    "max_value_bytes": ("max_value_bytes", int), "app_role": ("app_role", str), "viewer_role": ("viewer_role", str),
}
# Each rule kind is a key of an [audit.tables."SCHEMA.TABLE"] table and lists column names.
_RULE_KEYS = {rule.value: (rule.value, list) for rule in Rule}


def load_audit_settings(path: Path | None, overrides: dict[str, Any]) -> AuditSettings:
    """Read the ``[audit]`` table of the config file (if any) and apply ``overrides``, the typed flags."""
    data = read_config(path)
    values = read_table(data, "audit", _AUDIT_KEYS, path, ("tables",))
    rules = []
    for name, section in config_table(data, "audit.tables", path).items():
        rules.extend(_table_rules(name, section, path))
    settings = AuditSettings(**values, column_rules=tuple(rules), config_path=path if "audit" in data else None)
    valid = {item.name for item in fields(AuditSettings)}
    return replace(settings, **{key: value for key, value in overrides.items() if key in valid})


def _table_rules(name: str, section: Any, path: Path | None) -> list[RuleRequest]:
    """Turn one ``[audit.tables."SCHEMA.TABLE"]`` table into rule requests for its columns."""
    # json.dumps quotes the name the way a TOML basic string key is written.
    table = f"audit.tables.{json.dumps(name, ensure_ascii=False)}"
    if not isinstance(section, dict):
        raise not_a_table_error(table, path)
    try:
        table_parts = split_qualified_name(name, 2)
    except InvalidArgumentError as exc:
        raise located_error(exc, table, path) from None
    kinds = convert_table(section, table, _RULE_KEYS, path)

    seen: dict[str, str] = {}
    requests = []
    for kind, columns in kinds.items():
        for column in columns:
            if column in seen:
                raise ConfigError(
                    _("Column {column!r} has two rules in [{table}] of {path}: {first} and {second}; keep one.")
                    .format(column=column, table=table, path=path, first=seen[column], second=kind))
            seen[column] = kind
            # Parts quoted in the key stay quoted, so that they still match exactly, and the column is always
            # quoted, so that dots and quotes in its name reach the lookup unchanged.
            reference = ".".join([*(_as_written(part) for part in table_parts), _quoted(column)])
            requests.append(RuleRequest(reference, Rule(kind), str(path), table))
    return requests


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _as_written(part: str) -> str:
    """Write a part of a parsed name back as it was typed: in double quotes only if it was quoted."""
    return _quoted(part) if isinstance(part, QuotedName) else part
