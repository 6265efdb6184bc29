"""The Russian catalog covers every message and matches its compiled form."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from babel.messages.extract import extract_from_dir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import i18n as catalog_tool  # noqa: E402


def _source_messages() -> set[str]:
    method_map = [("auditctl/**.py", "python"), ("auditctl/**/templates/**.html", "jinja2")]
    options = {"auditctl/**/templates/**.html": {"extensions": "jinja2.ext.i18n"}}
    found = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options, keywords={"_": None, "ngettext": (1, 2)}):
        found.add(message if isinstance(message, str) else message[0])
    return found


def test_every_message_is_in_the_catalog():
    from babel.messages.pofile import read_po
    with catalog_tool.po_path("ru").open("rb") as handle:
        known = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(handle) if m.id}
    missing = sorted(_source_messages() - known)
    assert missing == [], "run `python tools/i18n.py update` and translate: " + repr(missing[:5])


def test_every_message_has_a_russian_translation():
    assert catalog_tool.missing_translations("ru") == []


def test_compiled_catalog_is_current():
    compiled = catalog_tool.po_path("ru").with_suffix(".mo").read_bytes()
    assert compiled == catalog_tool.compiled_bytes("ru"), "run `python tools/i18n.py compile`"


def test_byte_sizes_per_language():
    from auditctl.i18n import format_bytes, use_language

    with use_language("en"):
        english = [format_bytes(512), format_bytes(1536), format_bytes(3 * 1024 ** 3)]
    with use_language("ru"):
        russian = format_bytes(1536)
    assert english == ["512 B", "1.5 kB", "3.0 GB"]
    assert russian == "1,5 КБ"


def test_durations_per_language():
    from auditctl.i18n import format_duration, use_language

    with use_language("en"):
        english = [format_duration(0.24), format_duration(1234.56)]
    with use_language("ru"):
        russian = [format_duration(0.24), format_duration(1234.56)]
    assert english == ["0.2 s", "1,234.6 s"]
    assert russian == ["0,2 с", "1\u00a0234,6 с"]


# Text in ASCII quotes that Russian messages keep as in English, because the
# user types it exactly as written: shell-quoted arguments, TOML values, SQL and
# command lines. Every other quoted value is written in «», and so are the
# examples in messages that the web page shows too, where no shell is involved.
LITERAL_QUOTED_TEXTS = {
    '"0 2 * * *"', '"directory"', '"none"', '"starttls"', '"tls"', "'...'", "'17 3 * * *'", """'["a", 5]'""",
    """'["pr00000010", 5]'""", "'import secrets; print(secrets.token_urlsafe(32))'",
    "'{command_path} {help_option}'", "'{example}'", """'{{"reason": "manual"}}'""",
}


def _russian_translations() -> list[str]:
    from babel.messages.pofile import read_po
    with catalog_tool.po_path("ru").open("rb") as handle:
        messages = [message for message in read_po(handle) if message.id]
    return [text for message in messages
            for text in (message.string if isinstance(message.string, tuple) else (message.string,))]


def test_russian_quotes_values_in_guillemets():
    translations = _russian_translations()
    # {value!r} would print the value in ASCII quotes.
    assert [text for text in translations if "!r}" in text] == []
    # The DSN message writes a quote as \' for libpq, which is no quoted text, and a JSON example in «» has
    # quotes of its own.
    unquoted = [re.sub(r"«[^»]*»", "", text.replace("\\'", "")) for text in translations]
    quoted = {span for text in unquoted for span in re.findall(r"'[^'\n]*'|\"[^\"\n]*\"", text)}
    assert sorted(quoted - LITERAL_QUOTED_TEXTS) == []
