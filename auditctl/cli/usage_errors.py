"""Command-line usage errors, worded in the user's language.

typer 0.29 parses the command line with its own copy of click
(``typer._click``), whose error messages are English f-strings that never
pass through gettext. main() runs the command with standalone_mode=False,
catches those exceptions and rebuilds each message here through ``_()``
from the exception's attributes. Where an attribute is missing, the English
message itself is matched.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..i18n import _, ngettext

try:
    from pydantic import ValidationError
except ImportError:  # typer before 0.29 converts values without pydantic.
    ValidationError = None


@dataclass(frozen=True)
class ClickErrorClasses:
    """The exception classes of typer's bundled click that main() handles."""

    base: type[Exception]
    usage: type[Exception]
    no_such_option: type[Exception]
    missing_parameter: type[Exception]
    bad_parameter: type[Exception]
    no_args_is_help: type[Exception]


@dataclass(frozen=True)
class UsageErrorReport:
    """One click error as the single line main() prints: the message, then the usage or where to find it."""

    message: str
    usage: str | None = None
    help_command: str | None = None

    def line(self) -> str:
        """Return the error as one line, without the "Error:" that print_error adds.

        A missing or surplus argument is shown with the command's usage,
        because the usage names the arguments in their order. Any other
        error points to the command's help.
        """
        message = self.message if self.message.endswith((".", "?", "!")) else self.message + "."
        if self.usage:
            return f"{message} {_('Usage:')} {self.usage}"
        if self.help_command:
            return message + " " + _("See '{command}'.").format(command=self.help_command)
        return message


def find_click_error_classes() -> ClickErrorClasses | None:
    """Return the exception classes of typer's bundled click, or None if typer has none.

    Written against typer 0.29.2, which keeps click in the private module
    ``typer._click``. When that module or one of the classes is missing,
    main() leaves the errors to typer, which prints them in English.
    """
    try:
        module = importlib.import_module("typer._click.exceptions")
        return ClickErrorClasses(
            base=module.ClickException,
            usage=module.UsageError,
            no_such_option=module.NoSuchOption,
            missing_parameter=module.MissingParameter,
            bad_parameter=module.BadParameter,
            no_args_is_help=module.NoArgsIsHelpError,
        )
    except (ImportError, AttributeError):
        return None


def attach_context_to_parse_errors(command: Any, classes: ClickErrorClasses) -> None:
    """Wrap ``parse_args`` of the command and its subcommands so that parser errors carry the command's context.

    typer's click parser raises BadOptionUsage without a context for an
    option that lacks its value ("requires an argument") or a flag given one
    ("does not take a value"). describe_click_error needs the context for the
    usage line and the help hint. click attaches it itself only to errors of
    value conversion.
    """
    parse_args = command.parse_args

    def parse_args_with_context(context: Any, args: list[str]) -> list[str]:
        try:
            return parse_args(context, args)
        except classes.usage as error:
            if error.ctx is None:
                error.ctx = context
            raise

    command.parse_args = parse_args_with_context
    for subcommand in getattr(command, "commands", {}).values():
        attach_context_to_parse_errors(subcommand, classes)


def describe_click_error(error: Any, classes: ClickErrorClasses) -> UsageErrorReport:
    """Build the translated message of a click error with the usage or the help command that goes with it."""
    message = _click_error_message(error, classes)
    context = getattr(error, "ctx", None)
    if context is None:
        return UsageErrorReport(message)

    if _is_argument_error(error, classes):
        return UsageErrorReport(message, usage=f"{context.command_path} {usage_arguments(context.command, context)}")
    has_help = context.command.get_help_option(context) is not None
    return UsageErrorReport(message, help_command=f"{context.command_path} {context.help_option_names[0]}"
                            if has_help else None)


def _is_argument_error(error: Any, classes: ClickErrorClasses) -> bool:
    """Tell whether an error is about the positional arguments: one missing, or more given than the command takes."""
    if isinstance(error, classes.missing_parameter):
        kind = error.param_type or getattr(error.param, "param_type_name", None)
        return kind == "argument"
    if isinstance(error, (classes.no_such_option, classes.bad_parameter)) or not isinstance(error, classes.usage):
        return False
    # typer keeps the wording of these two errors in no attribute.
    return error.message.startswith(("Got unexpected extra argument", "Argument '"))


def usage_arguments(command: Any, context: Any) -> str:
    """Return what follows the command name on the usage line, with typer's placeholders translated."""
    return " ".join(_placeholder(piece) for piece in command.collect_usage_pieces(context))


def _placeholder(piece: str) -> str:
    # Argument names are auditctl's own metavars; these two come from typer.
    if piece == "[OPTIONS]":
        return _("[OPTIONS]")
    if piece == "COMMAND [ARGS]...":
        return _("COMMAND [ARGS]...")
    return piece


def _click_error_message(error: Any, classes: ClickErrorClasses) -> str:
    if isinstance(error, classes.no_such_option):
        return _no_such_option_message(error)
    if isinstance(error, classes.missing_parameter):
        return _missing_parameter_message(error)
    if isinstance(error, classes.bad_parameter):
        return _bad_parameter_message(error)
    if isinstance(error, classes.usage):
        # BadOptionUsage, BadArgumentUsage and the errors of Context.fail()
        # carry only their English message.
        return reword_typer_message(error.message)
    # Errors outside usage, such as a file that could not be opened.
    return error.format_message()


def _no_such_option_message(error: Any) -> str:
    option = _printable(error.option_name)
    if error.possibilities:
        return _("No such option: {option} (Possible options: {possibilities})").format(
            option=option, possibilities=", ".join(sorted(error.possibilities)))
    return _("No such option: {option}").format(option=option)


def _missing_parameter_message(error: Any) -> str:
    name = _parameter_hint(error)
    if name is None:
        return error.format_message()

    kind = error.param_type or getattr(error.param, "param_type_name", None)
    if kind == "argument":
        message = _("Missing argument {name}.").format(name=name)
    elif kind == "option":
        message = _("Missing option {name}.").format(name=name)
    else:
        message = _("Missing parameter {name}.").format(name=name)

    # NOTE: typer appends the choices of a required choice parameter in
    # English ("Choose from: ..."), but no auditctl parameter is one.
    get_missing_message = getattr(error.param, "get_missing_message", None)
    extras = [text for text in (error.message, get_missing_message and get_missing_message(ctx=error.ctx)) if text]
    if extras:
        message += " " + ". ".join(extras)
    return message


def _bad_parameter_message(error: Any) -> str:
    detail = _value_error_detail(error)
    name = _parameter_hint(error)
    if name is None:
        return _("Invalid value: {detail}").format(detail=detail)
    return _("Invalid value for {name}: {detail}").format(name=name, detail=detail)


def number_value_message(error: Any, classes: ClickErrorClasses) -> str | None:
    """Word a rejected value of a number option or argument as one line, or return None for any other error.

    A value that is not a number, or is out of the parameter's range, is a
    bad value rather than a malformed command line, so it gets the one-line
    message of auditctl's other bad values instead of the usage box.
    """
    cause = error.__cause__
    if not isinstance(error, classes.bad_parameter) or error.param is None:
        return None
    if ValidationError is None or not isinstance(cause, ValidationError) or not cause.errors():
        return None

    item = cause.errors()[0]
    kind = item["type"]
    parameter = error.param
    annotation = getattr(getattr(parameter, "type_descriptor", None), "annotation", None)
    integer = kind == "int_parsing" or (kind != "float_parsing" and annotation is int)
    if kind == "int_parsing":
        template = _("Invalid {option} value '{value}': it is not an integer; give {expected}.")
    elif kind == "float_parsing":
        template = _("Invalid {option} value '{value}': it is not a number; give {expected}.")
    elif kind in ("greater_than_equal", "less_than_equal"):
        template = _("Invalid {option} value '{value}': it is out of range; give {expected}.")
    else:
        return None

    if getattr(parameter, "param_type_name", None) == "option":
        name = max(parameter.opts, key=len)
    else:
        name = parameter.metavar or parameter.name.upper()
    return template.format(option=name, value=_printable(str(item.get("input"))),
                           expected=_expected_number(integer, getattr(parameter, "min", None),
                                                     getattr(parameter, "max", None)))


def _expected_number(integer: bool, low: float | None, high: float | None) -> str:
    """Word which values a number parameter takes, such as "an integer from 1 to 65535"."""
    if low is not None and high is not None:
        text = _("an integer from {min} to {max}") if integer else _("a number from {min} to {max}")
    elif low is not None:
        text = _("an integer of at least {min}") if integer else _("a number of at least {min}")
    elif high is not None:
        text = _("an integer of at most {max}") if integer else _("a number of at most {max}")
    else:
        text = _("an integer") if integer else _("a number")
    return text.format(min=_bound(low) if low is not None else None, max=_bound(high) if high is not None else None)


def _parameter_hint(error: Any) -> str | None:
    hint: str | Sequence[str] | None = error.param_hint
    if hint is None and error.param is not None:
        hint = error.param.get_error_hint()
    if hint is None or isinstance(hint, str):
        return None if hint is None else _requote(hint)
    return " / ".join(_quote(item) for item in hint)


def _value_error_detail(error: Any) -> str:
    """Word why a value was rejected: from the pydantic error typer converted it with, else from typer's message."""
    cause = error.__cause__
    if ValidationError is not None and isinstance(cause, ValidationError) and cause.errors():
        return _pydantic_error_detail(cause.errors()[0])
    return reword_typer_message(error.message)


def _pydantic_error_detail(item: dict[str, Any]) -> str:
    value = item.get("input")
    context = item.get("ctx") or {}
    kind = item["type"]
    if kind == "value_error" and "error" in context:
        # A ValueError of typer's own validators, such as the one of a choice.
        return reword_typer_message(str(context["error"]))
    if kind == "int_parsing":
        return _("{value} is not an integer.").format(value=_quoted(value))
    if kind == "float_parsing":
        return _("{value} is not a number.").format(value=_quoted(value))
    if kind == "greater_than_equal":
        return _("{value} is out of range: the minimum is {minimum}.").format(
            value=_printable(str(value)), minimum=_bound(context["ge"]))
    if kind == "less_than_equal":
        return _("{value} is out of range: the maximum is {maximum}.").format(
            value=_printable(str(value)), maximum=_bound(context["le"]))
    # NOTE: other pydantic errors keep pydantic's English message. typer
    # 0.29 raises none of them for the types of auditctl's parameters.
    return _printable(str(item["msg"]))


def reword_typer_message(message: str) -> str:
    """Translate one of typer's known English messages, or return any other message unchanged.

    typer 0.29.2 builds these messages as f-strings in typer._click.core,
    typer._click.parser, typer._param_types and typer.core, and keeps their
    parts in no attribute, so they are matched as text.
    """
    match = re.fullmatch(r"Option (?P<option>'.+') requires (?P<count>\d+) arguments\.", message, re.DOTALL)
    if match:
        return ngettext("Option {option} requires {count} argument.", "Option {option} requires {count} arguments.",
                        int(match["count"])).format(**_requoted_groups(match))

    match = re.fullmatch(r"Argument (?P<argument>'.+') takes (?P<count>\d+) values\.", message, re.DOTALL)
    if match:
        return ngettext("Argument {argument} takes {count} value.", "Argument {argument} takes {count} values.",
                        int(match["count"])).format(**_requoted_groups(match))

    match = re.fullmatch(r"(?P<error>.+)\. Did you mean (?P<suggestions>.+)\?", message, re.DOTALL)
    if match:
        # typer translates "No such command" itself and appends the suggestion in English.
        return match["error"] + ". " + _("Did you mean {suggestions}?").format(**_requoted_groups(match, "error"))

    templates = (
        (r"Got unexpected extra argument\(s\) \((?P<arguments>.*)\)",
         _("Got unexpected extra argument(s) ({arguments})")),
        (r"Option (?P<option>'.+') does not take a value\.", _("Option {option} does not take a value.")),
        (r"Option (?P<option>'.+') requires an argument\.", _("Option {option} requires an argument.")),
        # The ValueError of a choice parameter.
        (r"(?P<value>'.*') is not one of (?P<choices>.+)\.", _("{value} is not one of {choices}.")),
        (r"file (?P<path>'.*') is a directory\.", _("{path} is a directory, not a file.")),
        (r"dir (?P<path>'.*') is a file\.", _("{path} is a file, not a directory.")),
        (r"(?:file|dir|path) (?P<path>'.*') does not exist\.", _("{path} does not exist.")),
        (r"(?:file|dir|path) (?P<path>'.*') is not readable\.", _("{path} is not readable.")),
        (r"(?:file|dir|path) (?P<path>'.*') is not writable\.", _("{path} is not writable.")),
    )
    for pattern, template in templates:
        match = re.fullmatch(pattern, message, re.DOTALL)
        if match:
            return template.format(**_requoted_groups(match))
    return message


def _bound(number: float) -> str:
    """Show a limit as typed in the code: 720, not the 720.0 that a float option's limit becomes."""
    return str(int(number)) if isinstance(number, float) and number.is_integer() else str(number)


def _quoted(value: Any) -> str:
    return _quote(_printable(value)) if isinstance(value, str) else _printable(str(value))


def _quote(text: str) -> str:
    """Quote a name or value as the active language does: 'xml' in English, «xml» in Russian."""
    return _("'{text}'").format(text=text)


def _requote(text: str) -> str:
    """Quote again, in the active language, each item of a list that click wrote in ASCII quotes.

    click quotes names and values itself, one by one or as a list joined
    by ", ", such as "'table', 'json', 'csv'". Any other text is returned
    unchanged.
    """
    items = text.split(", ")
    if not all(len(item) >= 2 and item[0] == item[-1] == "'" for item in items):
        return text
    return ", ".join(_quote(item[1:-1]) for item in items)


def _requoted_groups(match: re.Match[str], *keep: str) -> dict[str, str]:
    """Return the named groups of a matched typer message, with the quoted ones quoted in the active language."""
    return {key: value if key in keep else _requote(value) for key, value in match.groupdict().items()}


def _printable(text: str) -> str:
    """Escape terminal control characters of a value typed on the command line."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]", lambda match: f"\\x{ord(match[0]):02x}", text)
