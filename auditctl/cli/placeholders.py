"""Placeholders of the help and usage lines, such as FILE and TABLE.COLUMN, in the user's language.

The option definitions name their placeholders (click's metavar) in
English. ``app.adapt_help()`` translates each of their words through the
catalog before the command line is parsed, as it does for typer's
[OPTIONS], so that help, usage lines and errors such as "Missing argument"
use the same words as the translated help texts.
"""

from __future__ import annotations

import re

from ..i18n import _

# Standard names and notations that stay as they are in every language.
KEPT_WORDS = frozenset({"CRON", "DSN", "ID", "JSON", "N", "TXID", "URL"})

_WORD = re.compile(r"[A-Z][A-Z_]*")


def translated_words() -> dict[str, str]:
    """Map each placeholder word to its translation in the active language."""
    return {
        "ACTION": _("ACTION"),
        "ADDR": _("ADDR"),
        "ADDRESS": _("ADDRESS"),
        "AGE": _("AGE"),
        "BYTES": _("BYTES"),
        "COLUMN": _("COLUMN"),
        "DIR": _("DIR"),
        "EVENT_ID": _("EVENT_ID"),
        "FILE": _("FILE"),
        "FOLDER": _("FOLDER"),
        "FORMAT": _("FORMAT"),
        "HEADER": _("HEADER"),
        "KEY": _("KEY"),
        "NAME": _("NAME"),
        "PATTERN": _("PATTERN"),
        "ROLE": _("ROLE"),
        "SCHEMA": _("SCHEMA"),
        "SECONDS": _("SECONDS"),
        "TABLE": _("TABLE"),
        "TYPE": _("TYPE"),
        "VALUE": _("VALUE"),
        "WHEN": _("WHEN"),
    }


def untranslated_words(metavar: str) -> list[str]:
    """Return the words of a placeholder that neither have a translation nor stay as they are."""
    known = translated_words()
    return [word for word in _WORD.findall(metavar) if word not in known and word not in KEPT_WORDS]


def translate_placeholder(metavar: str) -> str:
    """Translate each upper-case word of a placeholder, keeping the dots, spaces and brackets between them."""
    words = translated_words()
    return _WORD.sub(lambda match: words.get(match[0], match[0]), metavar)
