"""Translation of user-facing text through gettext.

English is the source language; the Russian catalog lives in
``auditctl/locale/ru/LC_MESSAGES/auditctl.mo``. The language comes from the
environment variables LANGUAGE, LC_ALL, LC_MESSAGES and LANG, in the order
gettext reads them.
"""

import gettext as _gettext
from pathlib import Path

DOMAIN = "auditctl"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

_translation = _gettext.translation(DOMAIN, LOCALE_DIR, fallback=True)


def gettext(message: str) -> str:
    """Translate one message into the language chosen by the environment."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """Translate a message whose form depends on a count."""
    return _translation.ngettext(singular, plural, count)


def language() -> str:
    """Return the language code of the active catalog, "en" for the source text."""
    info = _translation.info()
    return info.get("language", "en") if info else "en"


def install_as_default_domain() -> None:
    """Make this catalog the process-wide default gettext domain.

    typer and click translate their own strings ("Usage:", "Options", ...)
    through the default domain, so the CLI calls this before importing typer;
    the Russian catalog carries those strings too. A library must not call it.
    """
    _gettext.bindtextdomain(DOMAIN, str(LOCALE_DIR))
    _gettext.textdomain(DOMAIN)


def format_number(value: float, decimals: int = 0) -> str:
    """Format a number with the active language's digit grouping and decimal sign."""
    text = f"{value:,.{decimals}f}"
    if language().startswith("ru"):
        # Russian groups digits with a no-break space and uses a decimal comma.
        text = text.replace(",", "\u00a0").replace(".", ",")
    return text


_ = gettext
