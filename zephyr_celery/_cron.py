"""Cron expressions and time zones, checked before they reach Celery beat.

Pure functions, no I/O: :func:`parse_cron` splits a five-field expression, checks each
field with Celery's own ``crontab_parser`` and says which field is wrong and why, so a
typo fails when the module is imported rather than silently never firing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from celery.schedules import ParseException, crontab, crontab_parser

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


@dataclass(frozen=True)
class Field:
    """One position of a cron expression: its name, range and the names it accepts."""

    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    @property
    def accepted(self) -> str:
        words = f" or {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"{self.low}-{self.high}{words}, '*', lists (a,b), ranges (a-b) and steps (*/n)"


FIELDS = (
    Field("minute", 0, 59),
    Field("hour", 0, 23),
    Field("day of month", 1, 31),
    Field("month", 1, 12, MONTH_NAMES),
    Field("day of week", 0, 6, DAY_NAMES),
)

_WORD = re.compile(r"[A-Za-z]+")
# One comma-separated part: *, */step, value, or start-end with an optional /step.
_PART = re.compile(
    r"^(?:\*(?:/(?P<star_step>\d+))?|[a-z0-9]+(?:-[a-z0-9]+(?:/(?P<step>\d+))?)?)$", re.I
)


@dataclass(frozen=True)
class CronSpec:
    """A checked cron expression, one string per field (Celery's crontab arguments)."""

    expression: str
    minute: str
    hour: str
    day_of_month: str
    month_of_year: str
    day_of_week: str

    def crontab_kwargs(self) -> dict[str, str]:
        """Keyword arguments for :class:`celery.schedules.crontab`."""
        return {
            "minute": self.minute,
            "hour": self.hour,
            "day_of_month": self.day_of_month,
            "month_of_year": self.month_of_year,
            "day_of_week": self.day_of_week,
        }


def parse_cron(expression: str) -> CronSpec:
    """Check a cron expression and split it into its five fields.

    Args:
        expression: ``"minute hour day-of-month month day-of-week"``, e.g. ``"0 9 * * 1-5"``,
            or a macro such as ``"@daily"``.

    Raises:
        ValueError: naming the bad field, its value and what the field accepts.
    """
    if not isinstance(expression, str):
        raise TypeError(f"a cron expression must be a str, got {type(expression).__name__}")
    text = MACROS.get(expression.strip().lower(), expression)
    parts = text.split()
    if len(parts) != len(FIELDS):
        raise ValueError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            f"(minute hour day-of-month month day-of-week) or one of {', '.join(MACROS)}, "
            f"got {len(parts)}"
        )
    for field, value in zip(FIELDS, parts, strict=True):
        _check_field(expression, field, value)
    spec = CronSpec(expression, *(part.lower() for part in parts))
    if spec.day_of_month != "*" and spec.day_of_week != "*":
        # Celery requires both to match; classic cron runs when either matches.
        raise ValueError(
            f"invalid cron expression {expression!r}: restrict either the day of month "
            f"({spec.day_of_month!r}) or the day of week ({spec.day_of_week!r}), not both "
            "(Celery runs only on days matching both, classic cron on days matching either)"
        )
    try:
        crontab(**spec.crontab_kwargs())
    except ValueError as exc:  # e.g. the 30th of February: never fires
        raise ValueError(
            f"invalid cron expression {expression!r}: day of month {spec.day_of_month!r} "
            f"never occurs in month {spec.month_of_year!r}"
        ) from exc
    return spec


def _check_field(expression: str, field: Field, value: str) -> None:
    def bad(reason: str) -> ValueError:
        return ValueError(
            f"invalid cron expression {expression!r}: {field.name} field {value!r} {reason}; "
            f"accepted: {field.accepted}"
        )

    for part in value.split(","):
        match = _PART.match(part)
        if match is None:
            raise bad(f"has the malformed part {part!r}")
        if (match["star_step"] or match["step"] or "1").lstrip("0") == "":
            raise bad(f"has a step of 0 in {part!r}")
    for word in _WORD.findall(value):
        if word.lower() not in field.names:
            allowed = f"one of {', '.join(field.names)}" if field.names else "numbers only"
            raise bad(f"has the name {word!r} ({allowed})")
    try:
        crontab_parser(field.high - field.low + 1, field.low).parse(value.lower())
    except ParseException as exc:
        raise bad(f"cannot be parsed ({exc})") from exc
    except ValueError as exc:
        raise bad(f"is out of range ({exc})") from exc


def parse_timezone(tz: str | tzinfo | None) -> ZoneInfo | None:
    """Check a time zone given by IANA name (``"Europe/Paris"``) or as a ``ZoneInfo``.

    Returns ``None`` for ``None`` (the Celery app's ``timezone``, UTC by default).

    Raises:
        ValueError: the name is not a known IANA time zone.
        TypeError: the value is neither a str nor a ZoneInfo.
    """
    if tz is None or isinstance(tz, ZoneInfo):
        return tz
    if not isinstance(tz, str):
        raise TypeError(
            f"tz must be an IANA time zone name like 'Europe/Paris' or a ZoneInfo, "
            f"got {type(tz).__name__}"
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"tz={tz!r} is not a known IANA time zone (e.g. 'UTC', 'Europe/Paris', "
            "'America/New_York')"
        ) from exc


def parse_interval(
    interval: timedelta | float | None = None,
    *,
    seconds: float = 0,
    minutes: float = 0,
    hours: float = 0,
) -> timedelta:
    """Turn ``every(...)``'s arguments into a positive :class:`~datetime.timedelta`.

    Raises:
        ValueError: no interval, both forms at once, or an interval that is not positive.
    """
    units = {"seconds": seconds, "minutes": minutes, "hours": hours}
    for name, value in units.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    given = any(units.values())
    if interval is not None and given:
        raise ValueError("give the interval either as a timedelta or as seconds=/minutes=/hours=")
    if interval is None:
        if not given:
            raise ValueError("every() needs an interval: every(seconds=30) or every(timedelta)")
        delta = timedelta(seconds=seconds, minutes=minutes, hours=hours)
    elif isinstance(interval, timedelta):
        delta = interval
    elif isinstance(interval, int | float) and not isinstance(interval, bool):
        delta = timedelta(seconds=interval)
    else:
        raise TypeError(
            f"the interval must be a timedelta or a number of seconds, "
            f"got {type(interval).__name__}"
        )
    if delta <= timedelta(0):
        raise ValueError(f"the interval must be positive, got {delta.total_seconds():g} seconds")
    return delta
