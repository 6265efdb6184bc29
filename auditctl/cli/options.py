"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..i18n import _

DsnOption = Annotated[str | None, typer.Option(
    "--dsn", metavar="DSN",
    help=_("Connection string or postgresql:// URL. Defaults to AUDITCTL_DSN, then DATABASE_URL, "
           "then the PG* variables; keep passwords in those or in ~/.pgpass, not here."))]

SchemaOption = Annotated[str, typer.Option(
    "--schema", envvar="AUDITCTL_SCHEMA", metavar="NAME",
    help=_("Schema that contains the audit log."))]

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", metavar="FILE", envvar="AUDITCTL_CONFIG",
    help=_("TOML settings file. Defaults to ./auditctl.toml, then ~/.config/auditctl/config.toml."))]


def typed_flags(**values: Any) -> dict[str, Any]:
    """Keep only the flags the user gave, so that they override the config file and nothing else does."""
    return {key: value for key, value in values.items() if value is not None}
