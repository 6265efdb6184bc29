"""Crontab lines that auditctl adds: to the user's crontab through the crontab program, or to a file.

Each line ends with a marker comment, such as ``# auditctl backup``, so that
installing again replaces that line and keeps every other line as it was.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import AuditctlError, InvalidArgumentError
from .files import os_reason, replace_when_complete
from .i18n import _

logger = logging.getLogger(__name__)


class CrontabError(AuditctlError):
    """The crontab could not be read or written."""


@dataclass(frozen=True)
class CronResult:
    """The line written, where, and the earlier lines with the same marker that it replaced."""

    line: str
    marker: str
    target: str
    replaced_lines: tuple[str, ...] = ()

    @property
    def replaced(self) -> bool:
        return bool(self.replaced_lines)


# The @ words that cron reads in place of the five fields. @reboot is left out on purpose: a job that runs
# only when the machine starts would never run on a server that stays up for months.
SCHEDULE_WORDS = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class _Field:
    low: int
    high: int
    names: tuple[str, ...] = ()
    # The number that the first name stands for: jan is month 1, sun is weekday 0.
    first_name: int = 0


_FIELDS = (_Field(0, 59), _Field(0, 23), _Field(1, 31), _Field(1, 12, _MONTHS, 1), _Field(0, 7, _WEEKDAYS, 0))


def _field_names() -> tuple[str, ...]:
    return (_("minute"), _("hour"), _("day of month"), _("month"), _("day of week"))


def check_schedule(schedule: str) -> str:
    """Return ``schedule`` with single spaces when cron accepts it: five fields within their ranges, or an @ word.

    Each field is ``*``, a number, a range ``A-B`` or a list of them, each
    with an optional step ``/N``. Months and weekdays may also be names such
    as jan or mon. Raises InvalidArgumentError naming the field and the value
    that cron would reject.
    """
    text = " ".join(schedule.split())
    if text.startswith("@"):
        if text in SCHEDULE_WORDS:
            return text
        if text == "@reboot":
            raise InvalidArgumentError(
                _("Invalid --schedule '@reboot': the job would run only when the machine starts; give a time such "
                  "as @daily or \"0 2 * * *\"."))
        raise InvalidArgumentError(_("Invalid --schedule {value!r}: cron accepts only {words}.")
                                   .format(value=schedule, words=", ".join(SCHEDULE_WORDS)))
    fields = text.split(" ") if text else []
    if len(fields) != 5:
        raise InvalidArgumentError(
            _("Invalid --schedule {value!r}: give five cron fields such as \"0 2 * * *\" (02:00 every night), "
              "or a word such as @daily.").format(value=schedule))
    for text_field, rule, name in zip(fields, _FIELDS, _field_names(), strict=True):
        problem = _field_problem(text_field, rule)
        if problem is not None:
            raise InvalidArgumentError(_("Invalid --schedule {value!r}: {problem} in the {field} field.")
                                       .format(value=schedule, problem=problem, field=name))
    return text


def _field_problem(text: str, rule: _Field) -> str | None:
    """Describe what cron would reject in one field, or return None when it accepts the field."""
    for item in text.split(","):
        body, has_step, step = item.partition("/")
        max_step = rule.high - rule.low + 1
        if has_step and not (step.isascii() and step.isdigit() and 1 <= int(step) <= max_step):
            return _("the step of {item!r} is not a number from 1 to {max}").format(item=item, max=max_step)
        if body == "*":
            continue
        low, has_range, high = body.partition("-")
        if has_step and not has_range:
            # cron reads a step only after * or a range.
            return _("{item!r} has a step but no range; write */{step} or A-B/{step}").format(item=item, step=step)
        ends = [low, high] if has_range else [low]
        for end in ends:
            if _number(end, rule) is None and rule.names:
                return _("{value!r} is not a number from {low} to {high} or a name such as {name}").format(
                    value=end, low=rule.low, high=rule.high, name=rule.names[0])
            if _number(end, rule) is None:
                return _("{value!r} is not a number from {low} to {high}").format(value=end, low=rule.low,
                                                                                   high=rule.high)
        if has_range and _number(low, rule) > _number(high, rule):
            return _("the range {item!r} runs backwards").format(item=body)
    return None


def _number(text: str, rule: _Field) -> int | None:
    """Read one end of a field: a number within the field's range, or a month or weekday name."""
    if text.isascii() and text.isdigit():
        value = int(text)
        return value if rule.low <= value <= rule.high else None
    if text.lower() in rule.names:
        return rule.names.index(text.lower()) + rule.first_name
    return None


def cron_quote(value: str) -> str:
    """Quote one word of a crontab command for the shell, and its % signs for cron.

    cron turns an unescaped % into a newline, so it is escaped after shell quoting.
    """
    return shlex.quote(value).replace("%", "\\%")


def replace_marked_line(line: str, marker: str, crontab_file: Path | None) -> CronResult:
    """Add ``line`` to the crontab, or to ``crontab_file``, in place of earlier lines ending in ``marker``.

    Safe to repeat. Nothing is written when the crontab cannot be read.
    """
    if crontab_file is None:
        current = _read_user_crontab()
        target = "crontab"
    else:
        current = _read_crontab_file(crontab_file)
        target = str(crontab_file)

    other_lines, replaced = [], []
    for existing in current.splitlines():
        if existing.rstrip().endswith(marker):
            replaced.append(existing)
        else:
            other_lines.append(existing)
    text = "\n".join([*other_lines, line]) + "\n"

    if crontab_file is None:
        _write_user_crontab(text)
    else:
        with replace_when_complete(crontab_file) as handle:
            handle.write(text.encode())
    logger.info("wrote the line marked %r to %s", marker, target)
    return CronResult(line, marker, target, tuple(replaced))


def _read_crontab_file(path: Path) -> str:
    """Return the text of a crontab file, or an empty text when it does not exist yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        error = os_reason(exc) if isinstance(exc, OSError) else _("it is not UTF-8 text")
        raise InvalidArgumentError(_("Cannot read the crontab file {path}: {error}; pass another --crontab-file.")
                                   .format(path=path, error=error)) from None


def _run_crontab(argument: str, text: str | None = None) -> subprocess.CompletedProcess[str]:
    program = shutil.which("crontab")
    if program is None:
        raise CrontabError(_("The crontab program was not found; install cron, or pass --crontab-file."))
    # The C locale keeps crontab's messages in English, where "no crontab for USER" can be recognised.
    return subprocess.run([program, argument], input=text, capture_output=True, text=True, check=False,
                          env={**os.environ, "LC_ALL": "C"})


def _crontab_failure(completed: subprocess.CompletedProcess[str]) -> str:
    return completed.stderr.strip() or _("exit status {code}").format(code=completed.returncode)


def _read_user_crontab() -> str:
    completed = _run_crontab("-l")
    if completed.returncode == 0:
        return completed.stdout
    # Vixie cron and the crontab programs derived from it print this only when the user's crontab file
    # does not exist. Any other failure may hide lines that a rewrite would delete, so it stops the install.
    if "no crontab for " in completed.stderr.lower():
        return ""
    raise CrontabError(_("Reading the crontab with `crontab -l` failed: {error}. Nothing was changed; fix the "
                         "cause, or pass --crontab-file.").format(error=_crontab_failure(completed)))


def _write_user_crontab(text: str) -> None:
    completed = _run_crontab("-", text)
    if completed.returncode != 0:
        raise CrontabError(_("Writing the crontab failed: {error}").format(error=_crontab_failure(completed)))
