"""Timer trigger schedules: NCRONTAB expressions and TimeSpan intervals.

The Functions host reads ``{second} {minute} {hour} {day} {month} {day-of-week}`` (NCRONTAB with
seconds). Each field takes ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, and
comma lists; months and days of the week also take their English three-letter names. Days of
the week run 0-6 from Sunday. As in NCRONTAB, when both the day and the day of the week are
restricted an occurrence must satisfy both. A ``hh:mm:ss`` TimeSpan (App Service plans only, on
the real host) is a fixed interval between runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from devhost.config import HostConfigError, parse_timespan

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
# (name, low, high, names whose index + offset is the value)
_FIELDS = (
    ("second", 0, 59, None, 0),
    ("minute", 0, 59, None, 0),
    ("hour", 0, 23, None, 0),
    ("day", 1, 31, None, 0),
    ("month", 1, 12, _MONTHS, 1),
    ("day-of-week", 0, 6, _DAYS, 0),
)
_SEARCH_LIMIT = timedelta(days=366 * 8)  # 29 February and weekday combinations repeat within this


def _value(text: str, low: int, high: int, names: list[str] | None, offset: int, field: str) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + offset
    if not text.isdigit():
        raise HostConfigError(f"NCRONTAB {field}: {text!r} is not a number")
    number = int(text)
    if not low <= number <= high:
        raise HostConfigError(f"NCRONTAB {field}: {number} is outside {low}-{high}")
    return number


def _parse_field(
    text: str, field: str, low: int, high: int, names: list[str] | None, offset: int
) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = re.fullmatch(r"([^/]+)(?:/(\d+))?", item)
        if not match:
            raise HostConfigError(f"NCRONTAB {field}: bad item {item!r}")
        base, step_text = match.groups()
        step = int(step_text) if step_text else 1
        if step < 1:
            raise HostConfigError(f"NCRONTAB {field}: step must be >= 1")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            start_text, end_text = base.split("-", 1)
            first = _value(start_text, low, high, names, offset, field)
            last = _value(end_text, low, high, names, offset, field)
            if first > last:
                raise HostConfigError(f"NCRONTAB {field}: range {base!r} runs backwards")
        else:
            first = _value(base, low, high, names, offset, field)
            # "a/n" means from a to the end of the field, every n.
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronSchedule:
    """A six-field NCRONTAB expression."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment``, in ``moment``'s time zone."""
        tz = moment.tzinfo
        # Walk wall-clock time, skipping whole months/days/hours/minutes that cannot match.
        current = moment.replace(tzinfo=None, microsecond=0) + timedelta(seconds=1)
        limit = current + _SEARCH_LIMIT
        while current < limit:
            if current.month not in self.months:
                year, month = divmod(current.month, 12)  # month is 1-based: this is month+1
                current = datetime(current.year + year, month + 1, 1)
            elif current.day not in self.days or (current.weekday() + 1) % 7 not in self.weekdays:
                current = datetime(current.year, current.month, current.day) + timedelta(days=1)
            elif current.hour not in self.hours:
                current = current.replace(minute=0, second=0) + timedelta(hours=1)
            elif current.minute not in self.minutes:
                current = current.replace(second=0) + timedelta(minutes=1)
            elif current.second not in self.seconds:
                current += timedelta(seconds=1)
            else:
                return current.replace(tzinfo=tz)
        raise HostConfigError(f"NCRONTAB {self.expression!r} never occurs")

    def __str__(self) -> str:
        return self.expression


@dataclass(frozen=True)
class IntervalSchedule:
    """A TimeSpan schedule: every ``interval`` from the previous occurrence."""

    expression: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime:
        return moment + self.interval

    def __str__(self) -> str:
        return self.expression


Schedule = CronSchedule | IntervalSchedule


def parse_schedule(expression: str) -> Schedule:
    """Parse a timer trigger's ``schedule`` (after ``%NAME%`` resolution)."""
    text = expression.strip()
    fields = text.split()
    if len(fields) == 1 and ":" in text:
        seconds = parse_timespan(text)
        if seconds <= 0:
            raise HostConfigError(f"timer interval must be positive: {expression!r}")
        return IntervalSchedule(text, timedelta(seconds=seconds))
    if len(fields) != 6:
        raise HostConfigError(
            f"NCRONTAB {expression!r}: expected 6 fields (second minute hour day month day-of-week)"
        )
    parsed = [
        _parse_field(value, name, low, high, names, offset)
        for value, (name, low, high, names, offset) in zip(fields, _FIELDS, strict=True)
    ]
    schedule = CronSchedule(" ".join(fields), *parsed)
    schedule.next_after(datetime(2000, 1, 1))  # fail now for impossible dates like 30 February
    return schedule
