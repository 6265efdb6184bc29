"""Options shared by several commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..i18n import _


@dataclass(frozen=True)
class GlobalOptions:
    """Options given before the command name, kept as ``obj`` of the root click context, which subcommands inherit."""

    dsn: str | None = None
    quiet: bool = False


def is_quiet(ctx: typer.Context) -> bool:
    """Tell whether --quiet was given, before or after the command name."""
    options = ctx.find_root().obj
    return isinstance(options, GlobalOptions) and options.quiet


def global_dsn(ctx: typer.Context) -> str | None:
    """Return the --dsn given before the command name, or None."""
    options = ctx.obj
    return options.dsn if isinstance(options, GlobalOptions) else None


def _dsn_or_global_dsn(ctx: typer.Context, value: str | None) -> str | None:
    # The command's own --dsn takes precedence over the one before the command name.
    return value if value is not None else global_dsn(ctx)


DsnOption = Annotated[str | None, typer.Option(
    "--dsn", metavar="DSN", callback=_dsn_or_global_dsn,
    help=_("Connection string or postgresql:// URL. Defaults to the --dsn given before the command name, then "
           "AUDITCTL_DSN, then DATABASE_URL, then the PG* variables; keep passwords in those or in ~/.pgpass, "
           "not here."))]

SchemaOption = Annotated[str, typer.Option(
    "--schema", envvar="AUDITCTL_SCHEMA", metavar="NAME",
    help=_("Schema that contains the audit log."))]

DirOption = Annotated[Path | None, typer.Option(
    "--dir", metavar="FOLDER", envvar="AUDITCTL_BACKUP_DIR",
    help=_("Folder for the backups (config key: dir). Defaults to the current folder."))]

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", metavar="FILE", envvar="AUDITCTL_CONFIG",
    help=_("TOML settings file. Defaults to ./auditctl.toml, then config.toml in ~/.config/auditctl."))]

CrontabFileOption = Annotated[Path | None, typer.Option(
    "--crontab-file", metavar="FILE", dir_okay=False,
    help=_("Edit this file, in the format of `crontab -l`, instead of your crontab."))]


def typed_flags(**values: Any) -> dict[str, Any]:
    """Keep only the flags the user gave, so that they override the config file and nothing else does."""
    return {key: value for key, value in values.items() if value is not None}
