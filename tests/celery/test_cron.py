"""Cron expressions, time zones and intervals: checked before Celery beat sees them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab
from hypothesis import given
from hypothesis import strategies as st

from zephyr_celery._cron import parse_cron, parse_interval, parse_timezone


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("0 9 * * *", ("0", "9", "*", "*", "*")),
        ("*/15 9-17 * * mon-fri", ("*/15", "9-17", "*", "*", "mon-fri")),
        ("0 0 1 jan,jul *", ("0", "0", "1", "jan,jul", "*")),
        ("30 2 * * SUN", ("30", "2", "*", "*", "sun")),
        ("  5   4  *  *  * ", ("5", "4", "*", "*", "*")),
        ("0-30/10 * * * *", ("0-30/10", "*", "*", "*", "*")),
        ("@daily", ("0", "0", "*", "*", "*")),
        ("@hourly", ("0", "*", "*", "*", "*")),
        ("@weekly", ("0", "0", "*", "*", "0")),
    ],
)
def test_valid_expressions_split_into_celery_fields(
    expression: str, fields: tuple[str, ...]
) -> None:
    spec = parse_cron(expression)
    kwargs = spec.crontab_kwargs()
    assert (
        kwargs["minute"],
        kwargs["hour"],
        kwargs["day_of_month"],
        kwargs["month_of_year"],
        kwargs["day_of_week"],
    ) == fields
    crontab(**kwargs)  # Celery accepts what we accepted


@pytest.mark.parametrize(
    ("expression", "field", "value"),
    [
        ("60 9 * * *", "minute", "'60'"),
        ("0 24 * * *", "hour", "'24'"),
        ("0 9 0 * *", "day of month", "'0'"),
        ("0 9 32 * *", "day of month", "'32'"),
        ("0 9 * 13 *", "month", "'13'"),
        ("0 9 * * 7", "day of week", "'7'"),
        ("x 9 * * *", "minute", "'x'"),
        ("0 9 * * mar", "day of week", "'mar'"),
        ("0 9 * mon *", "month", "'mon'"),
        ("*/0 * * * *", "minute", "'*/0'"),
        ("1-/2 * * * *", "minute", "'1-/2'"),
        ("5/15 * * * *", "minute", "'5/15'"),
        (",1 * * * *", "minute", "',1'"),
        ("0 9 * * 1_2", "day of week", "'1_2'"),
        ("0 -1 * * *", "hour", "'-1'"),
    ],
)
def test_a_bad_field_is_named_with_its_value(expression: str, field: str, value: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron(expression)
    message = str(caught.value)
    assert f"{field} field {value}" in message
    assert "accepted:" in message


@pytest.mark.parametrize("expression", ["", "0 9 * *", "0 9 * * * *", "@sometimes"])
def test_the_wrong_number_of_fields_says_what_is_expected(expression: str) -> None:
    with pytest.raises(ValueError, match="expected 5 fields"):
        parse_cron(expression)


def test_a_date_that_never_occurs_is_refused() -> None:
    with pytest.raises(ValueError, match="day of month '30' never occurs in month '2'"):
        parse_cron("0 0 30 2 *")


def test_day_of_month_and_day_of_week_together_are_refused() -> None:
    # Classic cron ORs them, Celery ANDs them: refusing is better than surprising.
    with pytest.raises(ValueError, match="not both"):
        parse_cron("0 0 1 * mon")


def test_a_non_string_expression_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        parse_cron(9)  # type: ignore[arg-type]


FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


@st.composite
def field_values(draw: st.DrawFn, low: int, high: int) -> str:
    kind = draw(st.sampled_from(["star", "step", "value", "range", "list"]))
    if kind == "star":
        return "*"
    if kind == "step":
        return f"*/{draw(st.integers(1, high))}"
    if kind == "value":
        return str(draw(st.integers(low, high)))
    if kind == "range":
        start = draw(st.integers(low, high))
        return f"{start}-{draw(st.integers(start, high))}"
    values = draw(st.lists(st.integers(low, high), min_size=1, max_size=4))
    return ",".join(map(str, values))


@given(st.tuples(*(field_values(low, high) for low, high in FIELD_RANGES)))
def test_every_well_formed_expression_is_accepted_as_celery_reads_it(
    fields: tuple[str, ...],
) -> None:
    fields = (*fields[:4], "*") if fields[2] != "*" else fields  # not both day fields
    expression = " ".join(fields)
    try:
        spec = parse_cron(expression)
    except ValueError as exc:  # only a date that never occurs, e.g. 31 in February
        assert "never occurs" in str(exc)
        return
    ours = crontab(**spec.crontab_kwargs())
    assert ours.minute == crontab(minute=fields[0]).minute
    assert ours.hour == crontab(hour=fields[1]).hour


@given(st.text(alphabet="0123456789*/-,abcdefghijklmnopqrstuvwxyz_ ", max_size=30))
def test_any_text_is_accepted_or_refused_with_a_value_error(expression: str) -> None:
    try:
        spec = parse_cron(expression)
    except ValueError as exc:
        assert str(exc).startswith("invalid cron expression")
    else:
        crontab(**spec.crontab_kwargs())


def test_time_zones_by_iana_name() -> None:
    assert parse_timezone(None) is None
    assert parse_timezone("Europe/Paris") == ZoneInfo("Europe/Paris")
    zone = ZoneInfo("Asia/Tokyo")
    assert parse_timezone(zone) is zone


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "UTC+2"])
def test_an_unknown_time_zone_is_named(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"tz={name!r} is not a known IANA time zone")):
        parse_timezone(name)


def test_a_time_zone_of_another_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="IANA time zone name"):
        parse_timezone(datetime.now(UTC).tzinfo)


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        ((), {"seconds": 30}, timedelta(seconds=30)),
        ((), {"minutes": 5}, timedelta(minutes=5)),
        ((), {"hours": 1, "minutes": 30}, timedelta(minutes=90)),
        ((timedelta(seconds=2),), {}, timedelta(seconds=2)),
        ((0.5,), {}, timedelta(milliseconds=500)),
    ],
)
def test_intervals(args: tuple[object, ...], kwargs: dict[str, float], expected: timedelta) -> None:
    assert parse_interval(*args, **kwargs) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((), {}, ValueError, "needs an interval"),
        ((), {"seconds": -1}, ValueError, "must be positive"),
        ((timedelta(0),), {}, ValueError, "must be positive"),
        ((timedelta(seconds=1),), {"seconds": 1}, ValueError, "either as a timedelta"),
        (("30",), {}, TypeError, "timedelta or a number"),
        ((), {"seconds": "30"}, TypeError, "seconds must be a number"),
        ((True,), {}, TypeError, "timedelta or a number"),
    ],
)
def test_bad_intervals(
    args: tuple[object, ...], kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        parse_interval(*args, **kwargs)  # type: ignore[arg-type]
