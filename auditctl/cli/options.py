"""Options shared by several commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InvalidArgumentError
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


def _schema_not_empty(ctx: typer.Context, param: Any, value: str) -> str:
    # click treats an empty AUDITCTL_SCHEMA as unset, which would quietly mean the default schema. typer's
    # copy of click has its own ParameterSource, so the source is compared by name.
    source = ctx.get_parameter_source(param.name)
    if getattr(source, "name", None) == "DEFAULT" and os.environ.get("AUDITCTL_SCHEMA") == "":
        raise InvalidArgumentError(_("AUDITCTL_SCHEMA is set but empty; set it to the name of the audit schema, "
                                     "such as audit, or unset it."))
    require_value("--schema", value, _("give the name of the audit schema, such as audit"))
    return value


SchemaOption = Annotated[str, typer.Option(
    "--schema", envvar="AUDITCTL_SCHEMA", metavar="NAME", callback=_schema_not_empty,
    help=_("Schema that contains the audit log."))]


def folder_parser(option: str) -> Callable[[str], Path]:
    """Return a parser of ``option``'s value that rejects an empty one, which pathlib would read as the current folder.

    An empty value usually comes from a variable that was never set, as in
    ``--dir "$BACKUP_DIR"``, and must not put files into whatever folder cron
    or the shell happens to be in.
    """
    def parse(value: str | Path) -> Path:
        # click passes a default value through the parser too, already as a Path.
        require_value(option, str(value), _("name a folder"))
        return Path(value)

    return parse


def file_parser(option: str, *, reject_folder: bool = True) -> Callable[[str], Path]:
    """Return a parser of ``option``'s value that rejects an empty value and, with ``reject_folder``, a folder.

    A command that names a folder in a message of its own passes ``reject_folder=False``.
    """
    def parse(value: str | Path) -> Path:
        # click passes a default value through the parser too, already as a Path.
        require_value(option, str(value), _("name a file"))
        path = Path(value)
        if reject_folder and path.is_dir():
            raise InvalidArgumentError(_("Invalid {option} value {value!r}: it is a folder; name a file.")
                                       .format(option=option, value=value))
        return path

    return parse


DirOption = Annotated[Path | None, typer.Option(
    "--dir", metavar="FOLDER", envvar="AUDITCTL_BACKUP_DIR", parser=folder_parser("--dir"),
    help=_("Folder for the backups (config key: dir). Defaults to the current folder."))]

ConfigOption = Annotated[Path | None, typer.Option(
    "--config", metavar="FILE", envvar="AUDITCTL_CONFIG",
    help=_("TOML settings file. Defaults to ./auditctl.toml, then config.toml in ~/.config/auditctl."))]

CrontabFileOption = Annotated[Path | None, typer.Option(
    "--crontab-file", metavar="FILE", parser=file_parser("--crontab-file"),
    help=_("Edit this file, in the format of `crontab -l`, instead of your crontab."))]
PrintOption = Annotated[bool, typer.Option("--print", help=_("Print the entry instead of installing it."))]


def typed_flags(**values: Any) -> dict[str, Any]:
    """Keep only the flags the user gave, so that they override the config file and nothing else does."""
    return {key: value for key, value in values.items() if value is not None}


def require_value(option: str, value: str | None, hint: str) -> None:
    """Raise InvalidArgumentError when an option was given an empty value, with ``hint`` as what to give instead.

    An empty value usually comes from a shell variable that was never set,
    and would otherwise be ignored or match nothing.
    """
    if value is not None and not value.strip():
        raise InvalidArgumentError(
            _("Invalid {option} value {value!r}: it is empty; {hint}.").format(option=option, value=value, hint=hint))


def reject_option_names_as_values(command: Any) -> None:
    """Make the click command and every command below it reject an option name given as an option's value.

    click gives an option the next word whatever it is, so in
    ``redact --entity User --dry-run`` the ID was --dry-run and the
    redaction ran for real, and ``rotate --archive-dir --dry-run`` looked
    for a folder named --dry-run. The check wraps each command's parser, so
    it covers every option of every command. It runs on the words as typed,
    before click converts a value or rejects a word left over, such as 7d
    in ``query --user --since 7d``, so the error names the option at fault.
    """
    make_parser = command.make_parser

    def make_checking_parser(context: Any) -> Any:
        parser = make_parser(context)
        parse_args = parser.parse_args

        def parse_and_check(args: list[str]) -> tuple[dict[str, Any], list[str], list[Any]]:
            values, remaining, order = parse_args(args)
            # Shell completion parses partial command lines, where a missing value is expected.
            if not context.resilient_parsing:
                _check_option_values(command.get_params(context), values, order)
            return values, remaining, order

        parser.parse_args = parse_and_check
        return parser

    command.make_parser = make_checking_parser
    for subcommand in getattr(command, "commands", {}).values():
        reject_option_names_as_values(subcommand)


def _check_option_values(parameters: list[Any], values: dict[str, Any], order: list[Any]) -> None:
    """Raise InvalidArgumentError for the first option, in command-line order, whose value is an option name."""
    names = {name for parameter in parameters
             for name in (*parameter.opts, *getattr(parameter, "secondary_opts", [])) if name.startswith("-")}
    for parameter in dict.fromkeys(order):
        if getattr(parameter, "param_type_name", None) != "option":
            continue
        value = values.get(parameter.name)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and _is_option_name(item, names):
                option = max(parameter.opts, key=len)
                raise InvalidArgumentError(
                    _("Option {option} is missing its value: it got {value}, which is an option of this command; "
                      "give the value right after {option}.").format(option=option, value=item))


def _is_option_name(word: str, names: set[str]) -> bool:
    # --since=7d is the option --since with its value attached.
    return word in names or (word.startswith("--") and word.split("=", 1)[0] in names)
