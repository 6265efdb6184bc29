"""Locales for child programs: one that is installed, whatever locale the user's variables name.

A variable such as ``LANG=ru_RU.UTF-8`` on a machine without that locale
makes Debian's pg_wrapper, a Perl script in front of pg_dump and pg_restore,
print "perl: warning: Setting locale failed" on every start, and makes
initdb refuse to create a cluster. auditctl reads its own language from the
variables through gettext, which needs no installed locale, so only the
children get a replacement.
"""

from __future__ import annotations

import locale
import os
from collections.abc import Mapping
from functools import cache

# The variables that name a locale, in the order the C library reads them; LANGUAGE names only message catalogs.
_LOCALE_VARIABLES = ("LC_ALL", "LC_CTYPE", "LC_COLLATE", "LC_MESSAGES", "LC_MONETARY", "LC_NUMERIC", "LC_TIME",
                     "LANG")


@cache
def is_installed(name: str) -> bool:
    """Tell whether the C library can switch to the locale ``name``; the process's own locale stays as it was."""
    previous = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, name)
    except locale.Error:
        return False
    finally:
        locale.setlocale(locale.LC_CTYPE, previous)
    return True


def fallback_locale() -> str:
    """Return C.UTF-8 where it is installed, else C, which every system has."""
    return "C.UTF-8" if is_installed("C.UTF-8") else "C"


def child_environment(environment: Mapping[str, str] | None = None, *, force: bool = False) -> dict[str, str]:
    """Return a copy of ``environment`` (this process's by default) whose locale variables name installed locales.

    When any of them names a locale that is not installed, or when ``force``
    is set, LC_ALL is set to ``fallback_locale()``, which overrides them all.
    """
    result = dict(os.environ if environment is None else environment)
    missing = any(result.get(name) and not is_installed(result[name]) for name in _LOCALE_VARIABLES)
    if missing or force:
        result["LC_ALL"] = fallback_locale()
    return result
