"""Strings that typer translates through the default gettext domain.

Nothing calls this module. It lists typer's own texts so that message
extraction puts them into the auditctl catalog, which the CLI installs as
the default domain.

typer 0.29 runs its own copy of click (``typer._click``), whose usage errors
("No such option", "Invalid value", the "Usage:" line) are English f-strings
outside gettext. ``usage_errors.py`` rebuilds those messages through ``_()``
when main() catches them, and ``app.adapt_help()`` writes the "Usage:"
line and the help text of ``--help`` through ``_()`` as well.
"""


def _(message: str) -> str:
    return message


TYPER_STRINGS = (
    _("Arguments"),
    _("Options"),
    _("Commands"),
    _("Error"),
    _("Aborted."),
    _("Aborted!"),
    _("Missing command."),
    _("No such command {name!r}."),
    _("[default: {}]"),
    _("[env var: {}]"),
    _("[required]"),
    _("(deprecated) "),
    _("(dynamic)"),
    _("default: {default}"),
    _("env var: {var}"),
    _("required"),
    _("Try [blue]'{command_path} {help_option}'[/] for help."),
)
