"""Pure date rules: when the written form is due and when reviews fall due.

No I/O and no clock: every function takes the instants it needs, so the workflow can call them
deterministically and the tests can pin every boundary.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

LONDON = ZoneInfo("Europe/London")
FORM_WORKING_DAYS = 7
SEVEN_DAY_REVIEW = timedelta(days=7)
REVIEW_INTERVAL_MONTHS = 6


def _require_aware(instant: datetime, name: str) -> None:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must include a UTC offset (for example 2026-11-24T10:30:00+00:00)")


# England and Wales share one list; "ENG" includes substitute days when a holiday falls at a weekend.
# Computed once at import, outside any workflow sandbox (the library reads locale settings when it runs).
CALENDAR_YEARS = range(2000, 2101)
_BANK_HOLIDAYS = frozenset(holidays.country_holidays("GB", subdiv="ENG", years=CALENDAR_YEARS).keys())


def is_bank_holiday(day: date) -> bool:
    if day.year not in CALENDAR_YEARS:
        raise ValueError(f"{day.year} is outside the bank-holiday calendar ({CALENDAR_YEARS[0]}-{CALENDAR_YEARS[-1]})")
    return day in _BANK_HOLIDAYS


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and not is_bank_holiday(day)


def add_working_days(start: date, count: int) -> date:
    """The `count`th working day after `start` (start itself never counts)."""
    day = start
    remaining = count
    while remaining > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            remaining -= 1
    return day


def london_midnight_after(day: date) -> datetime:
    """The instant the London calendar day `day` ends (the next midnight, London time), as an aware datetime."""
    return datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=LONDON)


def form_due_at(called_at: datetime) -> datetime:
    """End of the 7th working day after the London calendar day of the initial phone call."""
    _require_aware(called_at, "called_at")
    call_day = called_at.astimezone(LONDON).date()
    return london_midnight_after(add_working_days(call_day, FORM_WORKING_DAYS))


def add_months_clamped(instant: datetime, months: int) -> datetime:
    """Same London wall-clock time `months` calendar months later; a missing day clamps to the month's end."""
    _require_aware(instant, "instant")
    local = instant.astimezone(LONDON)
    month_index = local.month - 1 + months
    year = local.year + month_index // 12
    month = month_index % 12 + 1
    day = min(local.day, calendar.monthrange(year, month)[1])
    wall = datetime(year, month, day, local.hour, local.minute, local.second, local.microsecond)
    return _localise(wall)


def _localise(wall: datetime) -> datetime:
    """Attach London time to a naive wall-clock time.

    An ambiguous time (autumn clock change) takes its first occurrence; a time skipped by the spring change
    moves forward by the hour that was skipped (01:30 becomes 02:30 BST).
    """
    # Convert through UTC: astimezone() to the tzinfo the datetime already carries is a no-op, which would leave a
    # skipped wall time (01:30, labelled GMT) uncorrected instead of normalising it to 02:30 BST.
    return wall.replace(tzinfo=LONDON, fold=0).astimezone(UTC).astimezone(LONDON)


def review_7_day_at(shielded_at: datetime) -> datetime:
    """Seven calendar days after shielding, at the same London wall-clock time."""
    _require_aware(shielded_at, "shielded_at")
    local = shielded_at.astimezone(LONDON)
    return _localise(local.replace(tzinfo=None) + SEVEN_DAY_REVIEW)


def review_6_month_at(shielded_at: datetime, occurrence: int = 1) -> datetime:
    """The `occurrence`th six-monthly review: counted from the shielding itself so month-end clamping never drifts."""
    if occurrence < 1:
        raise ValueError("occurrence starts at 1")
    return add_months_clamped(shielded_at, REVIEW_INTERVAL_MONTHS * occurrence)


def to_london(instant: datetime) -> datetime:
    return instant.astimezone(LONDON)


_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def long_date(day: date) -> str:
    """ "21 June 2019", as GOV.UK writes a date (a date of birth, say); locale-independent."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _day(local: datetime) -> str:
    return f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def _clock(local: datetime) -> str:
    """GOV.UK style: "5:30pm", "9am", "midday"."""
    if local.hour == 12 and local.minute == 0:
        return "midday"
    hour = local.hour % 12 or 12
    suffix = "am" if local.hour < 12 else "pm"
    return f"{hour}{suffix}" if local.minute == 0 else f"{hour}:{local.minute:02d}{suffix}"


def describe(instant: datetime) -> str:
    """A London time as an officer reads it aloud to a caller; locale-independent.

    Midnight is the end of the day before ("the end of Friday 4 December 2026"), because that is what a
    deadline at midnight means to the person who must meet it; any other time is "Tuesday 1 December 2026
    at 6:03pm".
    """
    local = instant.astimezone(LONDON)
    if local.hour == 0 and local.minute == 0 and local.second == 0:
        return f"the end of {_day(local - timedelta(days=1))}"
    return f"{_day(local)} at {_clock(local)}"


def working_days_later(instant: datetime, count: int) -> datetime:
    """The same London wall-clock time on the `count`th working day after `instant`'s London day (that day never
    counts): asked on Friday at 10am, two working days later is Tuesday at 10am (Wednesday after a bank-holiday
    Monday); asked on a Saturday, it is Tuesday too."""
    _require_aware(instant, "instant")
    local = instant.astimezone(LONDON)
    day = add_working_days(local.date(), count)
    return _localise(datetime.combine(day, local.time().replace(tzinfo=None)))
