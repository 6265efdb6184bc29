"""Translation of user-facing text through gettext.

English is the source language; the Russian catalog lives in
``auditctl/locale/ru/LC_MESSAGES/auditctl.mo``. The language comes from the
environment variables LANGUAGE, LC_ALL, LC_MESSAGES and LANG, in the order
gettext reads them, unless ``use_language()`` picked one for the current
context: the web page does that for each request, so that the library's
messages come out in the viewer's language.
"""

import contextlib
import gettext as _gettext
from collections.abc import Iterator
from contextvars import ContextVar
from functools import cache
from pathlib import Path

DOMAIN = "auditctl"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"

# Languages with a catalog, English (the source text) first.
LANGUAGES = ("en", "ru")

_translation = _gettext.translation(DOMAIN, LOCALE_DIR, fallback=True)
_context_translation: ContextVar[_gettext.NullTranslations | None] = ContextVar(
    "auditctl_translation", default=None)


@cache
def translation_for(language: str) -> _gettext.NullTranslations:
    """Load the catalog of one language, regardless of the environment variables."""
    return _gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


@contextlib.contextmanager
def use_language(language: str) -> Iterator[None]:
    """Translate into ``language`` inside this block, in this context only.

    Threads started with a copy of the context (as Starlette's thread pool
    does) see the same language; other threads keep theirs.
    """
    token = _context_translation.set(translation_for(language))
    try:
        yield
    finally:
        _context_translation.reset(token)


def _active() -> _gettext.NullTranslations:
    return _context_translation.get() or _translation


def gettext(message: str) -> str:
    """Translate one message into the language of the context, else of the environment."""
    return _active().gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """Translate a message whose form depends on a count."""
    return _active().ngettext(singular, plural, count)


def language() -> str:
    """Return the language code of the active catalog, "en" for the source text."""
    info = _active().info()
    return info.get("language", "en") if info else "en"


def install_as_default_domain() -> None:
    """Make this catalog the process-wide default gettext domain.

    typer and click translate their own strings ("Usage:", "Options", ...)
    through the default domain, so the CLI calls this before importing typer.
    The Russian catalog carries those strings too. A library must not call it.
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


def format_bytes(size: int) -> str:
    """Show a byte count with a binary unit (kB means KiB here, as in pg_size_pretty)."""
    units = (gettext("B"), gettext("kB"), gettext("MB"), gettext("GB"), gettext("TB"))
    value = float(size)
    for index, unit in enumerate(units):
        if value < 1024 or index == len(units) - 1:
            return f"{format_number(value, 0 if index == 0 else 1)} {unit}"
        value /= 1024
    return f"{size} {units[0]}"


def format_list(items: list[str]) -> str:
    """Join words as the active language writes a list: "INSERT, UPDATE, and DELETE" or "INSERT, UPDATE и DELETE"."""
    from babel.lists import format_list as babel_format_list

    return babel_format_list(items, locale=language())


def format_duration(seconds: float) -> str:
    """Show a duration in seconds with one decimal, with the active language's decimal sign."""
    unit = gettext("s")
    return f"{format_number(seconds, 1)} {unit}"


_ = gettext
