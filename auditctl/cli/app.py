"""The typer application, global options, logging set-up and error reporting."""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Annotated, Any, NoReturn

import psycopg
import typer
from rich.markup import escape

from .. import __version__
from ..db import first_line
from ..errors import AuditctlError, AuditctlWarning, InvalidArgumentError
from ..i18n import _
from ..render import PROGRESS_LOGGER, error_console, print_aborted, print_error, print_warnings
from .options import GlobalOptions, reject_option_names_as_values
from .placeholders import translate_placeholder
from .usage_errors import (attach_context_to_parse_errors, describe_click_error, find_click_error_classes,
                           number_value_message, usage_arguments)

logger = logging.getLogger("auditctl")

app = typer.Typer(
    name="auditctl",
    help=_("Audit trail and backups for PostgreSQL."),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    add_completion=False,
)

_state = {"verbose": 0, "quiet": False}


def configure_logging(verbose: int, quiet: bool, service: bool = False) -> None:
    """Log to stderr: warnings and errors, INFO lines with -v, SQL statements with -vv, errors only with -q.

    A command prints its results on stdout, and its INFO lines name the same
    objects again, so they wait for -v. Progress lines of long work without a
    terminal are logged all the same, by render.progress. A ``service``,
    such as serve, logs its INFO lines without a terminal too, because its
    log is the only account of what it did.
    """
    if quiet:
        level = logging.ERROR
    elif verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1 or (service and not error_console.is_terminal):
        level = logging.INFO
    else:
        level = logging.WARNING
    if error_console.is_terminal:
        from rich.logging import RichHandler
        handler: logging.Handler = RichHandler(console=error_console, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s auditctl %(levelname)s %(message)s"))
    root = logging.getLogger("auditctl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # Progress lines report what no result line contains, so only -q hides them.
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.ERROR if quiet else logging.INFO)


def configure_service_logging() -> None:
    """Set logging up again for a long-running service, with the -v and -q given."""
    configure_logging(_state["verbose"], _state["quiet"], service=True)


def _print_version(value: bool) -> None:
    if value:
        print(f"auditctl {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    dsn: Annotated[str | None, typer.Option(
        "--dsn", metavar="DSN",
        help=_("Connection string or postgresql:// URL for the command that follows, unless it is given a --dsn "
               "of its own. Defaults to AUDITCTL_DSN, then DATABASE_URL, then the PG* variables; keep passwords "
               "in those or in ~/.pgpass, not here."))] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True,
                                         help=_("Log more: -v for each object changed, -vv for debugging detail; "
                                                "errors then show a traceback."))] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help=_("Log errors only; maintain then prints only what "
                                                                "needs attention."))] = False,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help=_("Print the version of auditctl and exit."))] = False,
) -> None:
    """Audit trail and backups for PostgreSQL."""
    ctx.obj = GlobalOptions(dsn=dsn, quiet=quiet)
    _state["verbose"] = verbose
    _state["quiet"] = quiet
    configure_logging(verbose, quiet)


_GLOBAL_FLAGS = frozenset({"-v", "-vv", "-vvv", "--verbose", "-q", "--quiet"})


def hoist_global_options(args: list[str]) -> list[str]:
    """Move -v and -q to the front, so they work after the command name too.

    click accepts a group's options only before the subcommand; people type
    ``auditctl status -v`` all the same. Arguments after ``--`` stay put.
    """
    if "--" in args:
        cut = args.index("--")
        head, tail = args[:cut], args[cut:]
    else:
        head, tail = args, []
    flags = [arg for arg in head if arg in _GLOBAL_FLAGS]
    rest = [arg for arg in head if arg not in _GLOBAL_FLAGS]
    return flags + rest + tail


def escape_help_markup(command: Any) -> None:
    """Escape rich markup in the help of a click command, of its parameters and of its subcommands.

    typer renders help with rich_markup_mode="rich", which gives the boxed
    panels and their translated headings but reads every ``[word]`` in a help
    text as a style tag and drops it, such as ``[audit]`` of the config file.
    No help text of auditctl uses markup, so all of them are escaped here,
    after translation.
    """
    for each in all_commands(command):
        for attribute in ("help", "short_help"):
            text = getattr(each, attribute, None)
            if text:
                setattr(each, attribute, escape(text))
        for parameter in each.params:
            if getattr(parameter, "help", None):
                parameter.help = escape(parameter.help)


def all_commands(command: Any) -> Iterator[Any]:
    """Yield a click command and, depth first, every command below it."""
    yield command
    for subcommand in getattr(command, "commands", {}).values():
        yield from all_commands(subcommand)


def adapt_help(command: Any) -> None:
    """Fix typer's help output in the command and its subcommands.

    typer 0.29 prints the type of every option and argument, so ``--quiet``
    read ``--quiet <bool>`` and ``-v`` read ``-v <int>``, as if they took a
    value. An empty metavar leaves the type column of those options blank,
    and arguments show their name alone. typer's copy of click also writes
    "Usage:" and the help text of ``--help`` in English only, so both are
    replaced by the catalog's text, and so are the placeholders such as FILE.
    The range hints of numeric options, such as ``[x>=0.1]``, come from
    the catalog too. Its usage line put required arguments in braces, {FILE}, which reads
    like a choice; they are written plainly, and optional ones in brackets.
    """
    for each in all_commands(command):
        for parameter in each.params:
            _hide_type(parameter)
            if hasattr(parameter, "_get_number_range_help_str"):
                parameter._get_number_range_help_str = _translated_range(parameter)
            if parameter.metavar:
                parameter.metavar = translate_placeholder(parameter.metavar)
            if getattr(parameter, "param_type_name", None) == "argument":
                # The help's Arguments panel showed Python types such as <list[str]>.
                parameter.display_type_rich = _no_type
                parameter.get_usage_pieces = _plain_usage_pieces(parameter)
        each.get_help_option = _translated_help_option(each.get_help_option)
        each.format_usage = _translated_usage(each)
        each.format_help = _help_with_short_switches(each, each.format_help)


def _translated_help_option(get_help_option: Callable[[Any], Any]) -> Callable[[Any], Any]:
    # click creates the --help option from the context, so it is not in command.params.
    def help_option(context: Any) -> Any:
        option = get_help_option(context)
        if option is not None:
            _hide_type(option)
            option.help = _("Show this message and exit.")
        return option

    return help_option


def _translated_usage(command: Any) -> Callable[[Any, Any], None]:
    def format_usage(context: Any, formatter: Any) -> None:
        formatter.write_usage(context.command_path, usage_arguments(command, context), prefix=_("Usage:") + " ")

    return format_usage


def _help_with_short_switches(command: Any, format_help: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """Show an on/off switch such as --globals/--no-globals as --[no-]globals while the help is written.

    typer gives the --no- form a column of its own, which left the
    descriptions of the whole panel so narrow at 80 columns that long words
    were cut. Parsing is unchanged: the names are put back afterwards.
    """
    def format_help_with_short_switches(context: Any, formatter: Any) -> None:
        # Only switches whose every off form is --no- and an on form's name are shortened.
        switches = [parameter for parameter in command.params if getattr(parameter, "secondary_opts", None)
                    and {"--no-" + name[2:] for name in parameter.opts if name.startswith("--")}
                    >= set(parameter.secondary_opts)]
        saved = [(parameter.opts, parameter.secondary_opts) for parameter in switches]
        try:
            for parameter in switches:
                parameter.opts = [_short_switch(name, parameter.secondary_opts) for name in parameter.opts]
                parameter.secondary_opts = []
            format_help(context, formatter)
        finally:
            for parameter, (opts, secondary_opts) in zip(switches, saved, strict=True):
                parameter.opts, parameter.secondary_opts = opts, secondary_opts

    return format_help_with_short_switches


def _short_switch(name: str, negatives: list[str]) -> str:
    if name.startswith("--") and "--no-" + name[2:] in negatives:
        return "--[no-]" + name[2:]
    return name


def _translated_range(parameter: Any) -> Callable[[], str | None]:
    def range_help() -> str | None:
        low, high = getattr(parameter, "min", None), getattr(parameter, "max", None)
        if getattr(parameter, "count", False) and low == 0 and high is None:
            # typer shows no range for a counted flag such as -v.
            return None
        if low is not None and high is not None:
            return _("{min}<=x<={max}").format(min=low, max=high)
        if low is not None:
            return _("x>={min}").format(min=low)
        if high is not None:
            return _("x<={max}").format(max=high)
        return None

    return range_help


def _plain_usage_pieces(argument: Any) -> Callable[[Any], list[str]]:
    def usage_pieces(context: Any) -> list[str]:
        name = argument.metavar if argument.metavar is not None else argument.name.upper()
        if not argument.required:
            name = f"[{name}]"
        return [name + ("..." if argument.nargs != 1 else "")]

    return usage_pieces


def _no_type(ctx: Any) -> None:
    return None


def _hide_type(parameter: Any) -> None:
    if parameter is None or parameter.metavar is not None:
        return
    if getattr(parameter, "is_flag", False) or getattr(parameter, "count", False):
        parameter.metavar = ""
    elif getattr(parameter, "min", None) is not None or getattr(parameter, "max", None) is not None:
        # "<int range> [x>=0]" took a third of an 80-column help; the range stays after N.
        parameter.metavar = "N"


def run_command(command: Any, args: list[str]) -> None:
    """Run the click command, print its command-line errors in the user's language, and exit.

    typer's standalone mode would print those errors itself, in English, so
    the command runs with standalone_mode=False and this function does what
    typer would do otherwise: exit with the code of typer.Exit, print
    "Aborted." and exit 1 on typer.Abort, and exit 2 on a usage error,
    printed as one line like auditctl's other errors instead of typer's box.
    A bad value of a number option is raised as InvalidArgumentError, which
    main() prints.
    """
    classes = find_click_error_classes()
    if classes is None:
        command(args=args, prog_name="auditctl")
        return

    attach_context_to_parse_errors(command, classes)
    try:
        result = command.main(args=args, prog_name="auditctl", standalone_mode=False)
    except classes.no_args_is_help as exc:
        # typer has printed the help already.
        sys.exit(exc.exit_code)
    except classes.base as exc:
        message = number_value_message(exc, classes)
        if message is not None:
            raise InvalidArgumentError(message) from None
        report = describe_click_error(exc, classes)
        print_error(report.line())
        sys.exit(exc.exit_code)
    except typer.Abort:
        print_aborted()
        sys.exit(1)
    # The result is the code of typer.Exit or Context.exit(), or else what the
    # command returned: None for every auditctl command.
    sys.exit(result if isinstance(result, int) else 0)


class StdoutClosed(Exception):
    """The program reading stdout has exited, such as ``head`` in a pipeline.

    It replaces the BrokenPipeError, which typer would turn into exit status 1
    without a message.
    """


def catch_closed_stdout(command: Any) -> None:
    """Make the click command raise StdoutClosed when stdout's reader has gone, and flush stdout while it can."""
    invoke = command.invoke

    # JSON and table output is one large write, which render makes through auditctl.stdout so that a reader
    # who leaves during it raises BrokenPipeError here too.
    def invoke_and_flush(context: Any) -> Any:
        try:
            result = invoke(context)
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            if not stdout_closed():
                raise
            raise StdoutClosed() from None

    command.invoke = invoke_and_flush


def stdout_closed() -> bool:
    """Tell whether stdout is a pipe or socket whose reading end is closed."""
    poll = select.poll()
    poll.register(sys.__stdout__.fileno(), 0)
    return any(events & select.POLLERR for _fd, events in poll.poll(0))


def end_like_closed_pipe() -> NoReturn:
    """End the process by SIGPIPE, without a message, as cat and psql end when their reader has gone.

    A shell reports such a process as status 141 (128 + SIGPIPE), which a
    pipeline with pipefail reports as a failure, just as for cat or psql
    in the same place. A parent process can tell that SIGPIPE ended it.
    """
    # Output still buffered for stdout would fail again when Python exits.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.__stdout__.fileno())
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    sys.exit(128 + signal.SIGPIPE)


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
    """Print an AuditctlWarning as one translated line; leave other warnings to Python's own format."""
    if issubclass(category, AuditctlWarning):
        print_warnings([str(message)])
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def register_commands() -> None:
    """Import the command modules, each of which adds its commands to ``app``."""
    from . import (  # noqa: F401
        audit_commands, backup_commands, cron_commands, demo_command, log_commands, record_commands,
        retention_commands, serve_command)


def main() -> None:
    """Run the CLI; print AuditctlError and database errors as one line and exit non-zero."""
    register_commands()
    warnings.showwarning = show_warning
    try:
        command = typer.main.get_command(app)
        escape_help_markup(command)
        adapt_help(command)
        reject_option_names_as_values(command)
        catch_closed_stdout(command)
        run_command(command, hoist_global_options(sys.argv[1:]))
    except StdoutClosed:
        end_like_closed_pipe()
    except AuditctlError as exc:
        if _state["verbose"]:
            logger.exception("command failed")
        print_error(str(exc))
        sys.exit(exc.exit_code)
    except psycopg.Error as exc:
        if _state["verbose"]:
            logger.exception("command failed")
        sqlstate = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
        print_error(_("The database query failed: {error}{sqlstate}").format(error=first_line(str(exc)),
                                                                            sqlstate=sqlstate))
        sys.exit(1)
    except KeyboardInterrupt:
        print_error(_("Interrupted."))
        sys.exit(130)
    except Exception as exc:  # a bug of ours: still one line unless --verbose
        if _state["verbose"]:
            logger.exception("command failed")
        print_error(_("auditctl failed unexpectedly: {error}. Run again with --verbose for a traceback and report "
                      "it.")
                    .format(error=f"{type(exc).__name__}: {exc}"))
        sys.exit(70)
