"""The Russian catalog covers every message and matches its compiled form."""

from __future__ import annotations

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
