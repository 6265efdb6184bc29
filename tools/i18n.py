"""Maintain the Russian gettext catalog of auditctl.

    python tools/i18n.py update    extract messages, merge them into the .po file
    python tools/i18n.py compile   write the .mo file from the .po file
    python tools/i18n.py check     fail if a message lacks a translation or the .mo is stale

The .po file is edited by hand between ``update`` and ``compile``; both
files are committed, so an installed package needs no build step.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = ROOT / "auditctl" / "locale"
DOMAIN = "auditctl"
LANGUAGES = ("ru",)


def po_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def update() -> None:
    template = ROOT / "build" / f"{DOMAIN}.pot"
    template.parent.mkdir(exist_ok=True)
    subprocess.run(["pybabel", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_", "-k", "ngettext:1,2",
                    "--no-wrap", "--sort-by-file", "--project", DOMAIN, "-o", str(template), "."],
                   cwd=ROOT, check=True)
    for language in LANGUAGES:
        command = "update" if po_path(language).exists() else "init"
        subprocess.run(["pybabel", command, "-i", str(template), "-d", str(LOCALE_DIR), "-D", DOMAIN,
                        "-l", language, "--no-wrap", *(["--ignore-obsolete", "--no-fuzzy-matching"]
                                                          if command == "update" else [])],
                       cwd=ROOT, check=True)


def compiled_bytes(language: str) -> bytes:
    with po_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


def compile_catalogs() -> None:
    for language in LANGUAGES:
        po_path(language).with_suffix(".mo").write_bytes(compiled_bytes(language))


def missing_translations(language: str) -> list[str]:
    with po_path(language).open("rb") as handle:
        catalog = read_po(handle, locale=language)
    missing = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            missing.append(message.id if isinstance(message.id, str) else message.id[0])
    return missing


def check() -> int:
    problems = 0
    for language in LANGUAGES:
        for message_id in missing_translations(language):
            print(f"{language}: no translation for {message_id!r}")
            problems += 1
        if po_path(language).with_suffix(".mo").read_bytes() != compiled_bytes(language):
            print(f"{language}: {DOMAIN}.mo is older than {DOMAIN}.po; run `python tools/i18n.py compile`")
            problems += 1
    return 1 if problems else 0


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else ""
    if action == "update":
        update()
    elif action == "compile":
        compile_catalogs()
    elif action == "check":
        sys.exit(check())
    else:
        sys.exit(__doc__)
