"""The pure date rules in shielding.deadlines, pinned against the real calendar.

Every expected instant below was worked out by hand (weekdays, bank holidays and clock changes of England and
Wales) and is written as a literal London wall-clock time with its UTC offset; nothing is recomputed with the
code under test. Clock changes used: 29 Mar 2026 and 28 Mar 2027 (01:00 GMT -> 02:00 BST), 25 Oct 2026
(02:00 BST -> 01:00 GMT).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from shielding.deadlines import (
    add_working_days,
    describe,
    form_due_at,
    is_bank_holiday,
    is_working_day,
    long_date,
    review_6_month_at,
    review_7_day_at,
)

LONDON = ZoneInfo("Europe/London")
GMT = timedelta(0)
BST = timedelta(hours=1)


def at(iso: str) -> datetime:
    """An aware input instant from an ISO string with an explicit offset."""
    instant = datetime.fromisoformat(iso)
    assert instant.utcoffset() is not None, "test inputs must be aware"
    return instant


def assert_london(actual: datetime, expected_iso: str) -> None:
    """`actual` is the instant `expected_iso` (London wall time + offset), expressed in London time.

    Checks the instant, the UTC offset and the wall clock separately: an aware datetime can compare equal to the
    right instant while carrying the wrong offset/wall time, and vice versa.
    """
    expected = datetime.fromisoformat(expected_iso)
    # Guard the hand-written expectation itself against tzdata (not against the code under test).
    assert expected.astimezone(LONDON).utcoffset() == expected.utcoffset(), f"{expected_iso} is not a London time"
    assert actual.tzinfo is not None and actual.utcoffset() is not None
    assert actual.astimezone(UTC) == expected.astimezone(UTC), f"{actual.isoformat()} != {expected_iso}"
    assert actual.utcoffset() == expected.utcoffset(), f"offset of {actual.isoformat()}, expected {expected_iso}"
    assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None), f"wall clock {actual.isoformat()}"
    assert actual.astimezone(UTC).astimezone(LONDON).replace(tzinfo=None) == expected.replace(tzinfo=None)


# --- form_due_at -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("called", "due"),
    [
        # Mon 8 Jun 2026: Tue 9 .. Fri 12 (4), Mon 15 .. Wed 17 (7) -> end of Wed 17 Jun.
        pytest.param("2026-06-08T10:00:00+01:00", "2026-06-18T00:00:00+01:00", id="monday-bst"),
        # Tue 24 Nov 2026: Wed 25 .. Fri 27 (3), Mon 30, Tue 1, Wed 2, Thu 3 Dec (7) -> end of Thu 3 Dec.
        pytest.param("2026-11-24T10:30:00+00:00", "2026-12-04T00:00:00+00:00", id="tuesday-gmt"),
        # Fri 12 Jun 2026: Mon 15 .. Fri 19 (5), Mon 22, Tue 23 (7) -> end of Tue 23 Jun.
        pytest.param("2026-06-12T16:00:00+01:00", "2026-06-24T00:00:00+01:00", id="friday"),
        # Mon 15 Jun 2026: Tue 16 .. Fri 19 (4), Mon 22, Tue 23, Wed 24 (7) -> end of Wed 24 Jun.
        pytest.param("2026-06-15T00:00:00+01:00", "2026-06-25T00:00:00+01:00", id="monday-first-instant"),
    ],
)
def test_form_due_on_ordinary_weekdays(called: str, due: str) -> None:
    assert_london(form_due_at(at(called)), due)


@pytest.mark.parametrize(
    "called",
    [
        pytest.param("2026-06-13T00:00:00+01:00", id="saturday-first-instant"),
        pytest.param("2026-06-13T12:00:00+01:00", id="saturday-noon"),
        pytest.param("2026-06-14T23:59:59+01:00", id="sunday-last-second"),
    ],
)
def test_weekend_call_counts_from_monday(called: str) -> None:
    # Sat 13 / Sun 14 Jun 2026: Mon 15 .. Fri 19 (5), Mon 22, Tue 23 (7) -> end of Tue 23 Jun, the same as a
    # Friday call; one second later (Monday) the deadline moves to the end of Wed 24 Jun.
    assert_london(form_due_at(at(called)), "2026-06-24T00:00:00+01:00")


def test_call_at_2359_london_counts_that_day_and_a_minute_later_counts_the_next() -> None:
    # Wed 10 Jun 2026: Thu 11, Fri 12, Mon 15 .. Fri 19 (7) -> end of Fri 19 Jun.
    assert_london(form_due_at(at("2026-06-10T23:59:00+01:00")), "2026-06-20T00:00:00+01:00")
    assert_london(form_due_at(at("2026-06-10T23:59:59.999999+01:00")), "2026-06-20T00:00:00+01:00")
    # Thu 11 Jun 2026: Fri 12, Mon 15 .. Fri 19 (6), Mon 22 (7) -> end of Mon 22 Jun.
    assert_london(form_due_at(at("2026-06-11T00:00:00+01:00")), "2026-06-23T00:00:00+01:00")


@pytest.mark.parametrize(
    ("called", "due"),
    [
        # 22:59 UTC = 23:59 BST on Wed 10 Jun: still the 10th in London.
        pytest.param("2026-06-10T22:59:00+00:00", "2026-06-20T00:00:00+01:00", id="utc-2259-is-10-june"),
        # 23:00 UTC = 00:00 BST on Thu 11 Jun: the London day has turned although the UTC day has not.
        pytest.param("2026-06-10T23:00:00+00:00", "2026-06-23T00:00:00+01:00", id="utc-2300-is-11-june"),
        pytest.param("2026-06-10T23:30:00+00:00", "2026-06-23T00:00:00+01:00", id="utc-2330-is-11-june"),
    ],
)
def test_call_day_is_the_london_day_not_the_utc_day(called: str, due: str) -> None:
    assert_london(form_due_at(at(called)), due)


@pytest.mark.parametrize(
    ("called", "due"),
    [
        # Thu 27 Aug 2026: Fri 28 (1), Mon 31 Aug is a bank holiday, Tue 1 .. Fri 4 Sep (5), Mon 7, Tue 8 (7).
        pytest.param("2026-08-27T12:00:00+01:00", "2026-09-09T00:00:00+01:00", id="before-holiday"),
        # Mon 31 Aug 2026 (summer bank holiday): Tue 1 .. Fri 4 (4), Mon 7, Tue 8, Wed 9 (7).
        pytest.param("2026-08-31T12:00:00+01:00", "2026-09-10T00:00:00+01:00", id="on-holiday"),
        # Tue 1 Sep 2026: Wed 2 .. Fri 4 (3), Mon 7 .. Thu 10 (7).
        pytest.param("2026-09-01T12:00:00+01:00", "2026-09-11T00:00:00+01:00", id="after-holiday"),
    ],
)
def test_call_around_a_bank_holiday(called: str, due: str) -> None:
    assert_london(form_due_at(at(called)), due)


@pytest.mark.parametrize(
    ("called", "due"),
    [
        # Wed 23 Dec 2026: Thu 24 (1); Fri 25, Mon 28 (substitute for Sat 26) off; Tue 29 .. Thu 31 (4);
        # Fri 1 Jan 2027 off; Mon 4, Tue 5, Wed 6 (7).
        pytest.param("2026-12-23T12:00:00+00:00", "2027-01-07T00:00:00+00:00", id="2026-wed-23-dec"),
        # Thu 24 Dec 2026: Tue 29 .. Thu 31 (3), Mon 4 .. Thu 7 Jan (7); counting Mon 28 would end it on Wed 6.
        pytest.param("2026-12-24T12:00:00+00:00", "2027-01-08T00:00:00+00:00", id="2026-thu-24-dec"),
        # Mon 28 Dec 2026, the substitute day itself: same count as the 24th.
        pytest.param("2026-12-28T12:00:00+00:00", "2027-01-08T00:00:00+00:00", id="2026-mon-28-dec-substitute"),
        # Thu 23 Dec 2027: Fri 24 (1); Sat 25 .. Tue 28 off (Mon 27, Tue 28 substitutes); Wed 29 .. Fri 31 (4);
        # Mon 3 Jan 2028 off (substitute for Sat 1 Jan); Tue 4, Wed 5, Thu 6 (7).
        pytest.param("2027-12-23T12:00:00+00:00", "2028-01-07T00:00:00+00:00", id="2027-thu-23-dec"),
        # Fri 24 Dec 2027: Wed 29 .. Fri 31 (3), Tue 4 .. Fri 7 Jan (7).
        pytest.param("2027-12-24T12:00:00+00:00", "2028-01-08T00:00:00+00:00", id="2027-fri-24-dec"),
        # Thu 30 Dec 2027: Fri 31 (1), Tue 4 .. Fri 7 (5), Mon 10, Tue 11 (7).
        pytest.param("2027-12-30T12:00:00+00:00", "2028-01-12T00:00:00+00:00", id="2027-thu-30-dec"),
        # Fri 31 Dec 2027: Mon 3 Jan off; Tue 4 .. Fri 7 (4), Mon 10 .. Wed 12 (7).
        pytest.param("2027-12-31T12:00:00+00:00", "2028-01-13T00:00:00+00:00", id="2027-fri-31-dec"),
    ],
)
def test_call_around_christmas_and_new_year_substitute_days(called: str, due: str) -> None:
    assert_london(form_due_at(at(called)), due)


@pytest.mark.parametrize(
    ("called", "due"),
    [
        # Wed 24 Mar 2027: Thu 25 (1); Good Friday 26 and Easter Monday 29 off; Tue 30 .. Fri 2 Apr (5);
        # Mon 5, Tue 6 (7) -> end of Tue 6 Apr, in BST (the clocks went forward on Sun 28 Mar 2027).
        pytest.param("2027-03-24T12:00:00+00:00", "2027-04-07T00:00:00+01:00", id="wed-before-good-friday"),
        # Thu 25 Mar 2027: Tue 30 (1), Wed 31, Thu 1, Fri 2 (4), Mon 5, Tue 6, Wed 7 (7).
        pytest.param("2027-03-25T12:00:00+00:00", "2027-04-08T00:00:00+01:00", id="thu-before-good-friday"),
        pytest.param("2027-03-26T12:00:00+00:00", "2027-04-08T00:00:00+01:00", id="on-good-friday"),
        pytest.param("2027-03-29T12:00:00+01:00", "2027-04-08T00:00:00+01:00", id="on-easter-monday"),
        # Tue 30 Mar 2027: Wed 31, Thu 1, Fri 2 (3), Mon 5 .. Thu 8 (7).
        pytest.param("2027-03-30T12:00:00+01:00", "2027-04-09T00:00:00+01:00", id="tue-after-easter-monday"),
    ],
)
def test_call_around_easter(called: str, due: str) -> None:
    assert_london(form_due_at(at(called)), due)


def test_due_midnight_takes_bst_offset_after_spring_change() -> None:
    # Fri 20 Mar 2026 (GMT): Mon 23 .. Fri 27 (5), Mon 30, Tue 31 (7); clocks went forward on Sun 29 Mar,
    # so the deadline, midnight at the end of Tue 31 Mar, is 00:00 BST = 23:00 UTC on the 31st.
    due = form_due_at(at("2026-03-20T09:00:00+00:00"))
    assert_london(due, "2026-04-01T00:00:00+01:00")
    assert due == datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
    assert due.utcoffset() == BST


def test_due_midnight_takes_gmt_offset_after_autumn_change() -> None:
    # Fri 16 Oct 2026 (BST): Mon 19 .. Fri 23 (5), Mon 26, Tue 27 (7); clocks went back on Sun 25 Oct,
    # so the deadline is 00:00 GMT on Wed 28 Oct = 00:00 UTC.
    due = form_due_at(at("2026-10-16T09:00:00+01:00"))
    assert_london(due, "2026-10-28T00:00:00+00:00")
    assert due == datetime(2026, 10, 28, 0, 0, tzinfo=UTC)
    assert due.utcoffset() == GMT


@pytest.mark.parametrize(
    "called",
    [
        pytest.param(datetime(2026, 11, 24, 10, 30, tzinfo=UTC), id="utc"),
        pytest.param(datetime(2026, 11, 24, 10, 30, tzinfo=LONDON), id="europe-london"),
        pytest.param(datetime(2026, 11, 24, 5, 30, tzinfo=timezone(timedelta(hours=-5))), id="minus-5"),
        pytest.param(datetime(2026, 11, 24, 19, 30, tzinfo=ZoneInfo("Asia/Tokyo")), id="tokyo"),
        # 00:30 on the 25th in +09:00 is still 15:30 on the 24th in London.
        pytest.param(at("2026-11-25T00:30:00+09:00"), id="plus-9-next-calendar-day"),
        # 23:30 on the 23rd in -11:00 is 10:30 on the 24th in London.
        pytest.param(at("2026-11-23T23:30:00-11:00"), id="minus-11-previous-calendar-day"),
    ],
)
def test_same_instant_in_any_offset_gives_the_same_deadline(called: datetime) -> None:
    # Tue 24 Nov 2026 -> end of Thu 3 Dec 2026 (see test_form_due_on_ordinary_weekdays).
    assert_london(form_due_at(called), "2026-12-04T00:00:00+00:00")


def test_form_due_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="called_at"):
        form_due_at(datetime(2026, 11, 24, 10, 30))


# --- review_7_day_at ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shielded", "due"),
    [
        pytest.param("2026-06-10T14:15:00+01:00", "2026-06-17T14:15:00+01:00", id="summer"),
        pytest.param("2026-11-24T10:30:00+00:00", "2026-12-01T10:30:00+00:00", id="winter"),
        # Given in UTC: 23:30 UTC on Wed 10 Jun is 00:30 BST on Thu 11 Jun -> 00:30 BST on Thu 18 Jun.
        pytest.param("2026-06-10T23:30:00+00:00", "2026-06-18T00:30:00+01:00", id="utc-input-next-london-day"),
        # Spring change on Sun 29 Mar 2026: wall clock kept, offset moves to +01:00 (only 6 d 23 h elapse).
        pytest.param("2026-03-22T10:00:00+00:00", "2026-03-29T10:00:00+01:00", id="across-spring-change"),
        pytest.param("2026-03-26T08:00:00+00:00", "2026-04-02T08:00:00+01:00", id="across-spring-change-weekday"),
        # Autumn change on Sun 25 Oct 2026: wall clock kept, offset moves to +00:00 (7 d 1 h elapse).
        pytest.param("2026-10-19T09:00:00+01:00", "2026-10-26T09:00:00+00:00", id="across-autumn-change"),
    ],
)
def test_review_7_day_same_wall_clock_seven_days_later(shielded: str, due: str) -> None:
    assert_london(review_7_day_at(at(shielded)), due)


def test_review_7_day_spring_change_elapsed_time() -> None:
    shielded = datetime(2026, 3, 22, 10, 0, tzinfo=LONDON)
    due = review_7_day_at(shielded)
    assert due == datetime(2026, 3, 29, 9, 0, tzinfo=UTC)
    assert due.utcoffset() == BST
    assert due.astimezone(UTC) - shielded.astimezone(UTC) == timedelta(days=6, hours=23)


def test_review_7_day_autumn_change_elapsed_time() -> None:
    shielded = datetime(2026, 10, 19, 9, 0, tzinfo=LONDON)
    due = review_7_day_at(shielded)
    assert due == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    assert due.utcoffset() == GMT
    assert due.astimezone(UTC) - shielded.astimezone(UTC) == timedelta(days=7, hours=1)


@pytest.mark.parametrize(
    ("shielded", "due"),
    [
        # 00:59 on Sun 29 Mar 2026 still exists (GMT).
        pytest.param("2026-03-22T00:59:00+00:00", "2026-03-29T00:59:00+00:00", id="0059-before-gap"),
        # 01:00-01:59 do not exist on Sun 29 Mar 2026: 01:30 moves forward by the skipped hour to 02:30 BST.
        pytest.param("2026-03-22T01:00:00+00:00", "2026-03-29T02:00:00+01:00", id="0100-in-gap"),
        pytest.param("2026-03-22T01:30:00+00:00", "2026-03-29T02:30:00+01:00", id="0130-in-gap"),
        # 02:00 BST exists (it is the instant the clocks jumped to).
        pytest.param("2026-03-22T02:00:00+00:00", "2026-03-29T02:00:00+01:00", id="0200-after-gap"),
    ],
)
def test_review_7_day_nonexistent_wall_time_moves_forward(shielded: str, due: str) -> None:
    assert_london(review_7_day_at(at(shielded)), due)


def test_review_7_day_ambiguous_wall_time_takes_first_occurrence() -> None:
    # 01:30 happens twice on Sun 25 Oct 2026; the first (BST, 00:30 UTC) is taken.
    due = review_7_day_at(at("2026-10-18T01:30:00+01:00"))
    assert_london(due, "2026-10-25T01:30:00+01:00")
    # Compare in UTC: Python's cross-zone == is always False for an ambiguous wall time (PEP 495).
    assert due.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_review_7_day_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="shielded_at"):
        review_7_day_at(datetime(2026, 6, 10, 14, 15))


# --- review_6_month_at -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shielded", "occurrence", "due"),
    [
        # Wall clock kept across the clock change, offset follows the season.
        pytest.param("2026-06-10T14:15:00+01:00", 1, "2026-12-10T14:15:00+00:00", id="summer-to-winter"),
        pytest.param("2026-11-24T10:30:00+00:00", 1, "2027-05-24T10:30:00+01:00", id="winter-to-summer"),
        pytest.param("2026-11-24T10:30:00+00:00", 2, "2027-11-24T10:30:00+00:00", id="winter-occurrence-2"),
        # London month, not UTC month: 23:30 UTC on 30 Jun is 00:30 BST on 1 Jul -> 00:30 GMT on 1 Jan 2027.
        pytest.param("2026-06-30T23:30:00+00:00", 1, "2027-01-01T00:30:00+00:00", id="london-month"),
        # Month-end clamping: no 31 Feb.
        pytest.param("2026-08-31T09:00:00+01:00", 1, "2027-02-28T09:00:00+00:00", id="31-aug-to-28-feb"),
        pytest.param("2026-08-28T09:00:00+01:00", 1, "2027-02-28T09:00:00+00:00", id="28-aug-to-28-feb"),
        pytest.param("2027-08-31T09:00:00+01:00", 1, "2028-02-29T09:00:00+00:00", id="31-aug-to-leap-29-feb"),
        pytest.param("2026-08-31T09:00:00+01:00", 2, "2027-08-31T09:00:00+01:00", id="31-aug-occurrence-2-no-drift"),
        pytest.param("2027-08-31T09:00:00+01:00", 2, "2028-08-31T09:00:00+01:00", id="31-aug-leap-occurrence-2"),
        pytest.param("2027-08-31T09:00:00+01:00", 3, "2029-02-28T09:00:00+00:00", id="31-aug-occurrence-3"),
        # Leap day.
        pytest.param("2028-02-29T12:00:00+00:00", 1, "2028-08-29T12:00:00+01:00", id="leap-day-plus-6"),
        pytest.param("2028-02-29T12:00:00+00:00", 2, "2029-02-28T12:00:00+00:00", id="leap-day-plus-12"),
        pytest.param("2028-02-29T12:00:00+00:00", 3, "2029-08-29T12:00:00+01:00", id="leap-day-plus-18"),
        pytest.param("2028-02-29T12:00:00+00:00", 8, "2032-02-29T12:00:00+00:00", id="leap-day-plus-48"),
    ],
)
def test_review_6_month(shielded: str, occurrence: int, due: str) -> None:
    assert_london(review_6_month_at(at(shielded), occurrence), due)


def test_review_6_month_default_is_first_occurrence() -> None:
    assert_london(review_6_month_at(at("2026-08-31T09:00:00+01:00")), "2027-02-28T09:00:00+00:00")


def test_review_6_month_nonexistent_wall_time_moves_forward() -> None:
    # 01:30 BST on Mon 29 Sep 2025 -> 01:30 on Sun 29 Mar 2026 does not exist -> 02:30 BST (01:30 UTC).
    due = review_6_month_at(at("2025-09-29T01:30:00+01:00"))
    assert_london(due, "2026-03-29T02:30:00+01:00")
    assert due == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_review_6_month_ambiguous_wall_time_takes_first_occurrence() -> None:
    # 01:30 BST on Sat 25 Apr 2026 -> 01:30 on Sun 25 Oct 2026 happens twice; the first is BST (00:30 UTC).
    due = review_6_month_at(at("2026-04-25T01:30:00+01:00"))
    assert_london(due, "2026-10-25T01:30:00+01:00")
    # Compare in UTC: Python's cross-zone == is always False for an ambiguous wall time (PEP 495).
    assert due.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("occurrence", [0, -1])
def test_review_6_month_refuses_occurrence_below_one(occurrence: int) -> None:
    with pytest.raises(ValueError, match="occurrence"):
        review_6_month_at(at("2026-08-31T09:00:00+01:00"), occurrence)


def test_review_6_month_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError):
        review_6_month_at(datetime(2026, 8, 31, 9, 0))


# --- is_bank_holiday / is_working_day / add_working_days ---------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "holiday", "working"),
    [
        (date(2026, 6, 10), False, True),  # ordinary Wednesday
        (date(2026, 6, 13), False, False),  # Saturday
        (date(2026, 6, 14), False, False),  # Sunday
        (date(2026, 8, 31), True, False),  # summer bank holiday (Monday)
        (date(2026, 9, 1), False, True),
        (date(2026, 12, 24), False, True),  # Christmas Eve is not a bank holiday
        (date(2026, 12, 25), True, False),  # Christmas Day (Friday)
        (date(2026, 12, 28), True, False),  # substitute for Boxing Day (Sat 26)
        (date(2026, 12, 29), False, True),
        (date(2027, 1, 1), True, False),  # New Year's Day (Friday)
        (date(2027, 3, 25), False, True),
        (date(2027, 3, 26), True, False),  # Good Friday
        (date(2027, 3, 28), False, False),  # Easter Sunday: a Sunday, not a bank holiday
        (date(2027, 3, 29), True, False),  # Easter Monday
        (date(2027, 3, 30), False, True),
        (date(2027, 12, 24), False, True),
        (date(2027, 12, 27), True, False),  # substitute for Christmas Day (Sat 25)
        (date(2027, 12, 28), True, False),  # substitute for Boxing Day (Sun 26)
        (date(2027, 12, 29), False, True),
        (date(2027, 12, 31), False, True),
        (date(2028, 1, 3), True, False),  # substitute for New Year's Day (Sat 1)
        (date(2028, 1, 4), False, True),
    ],
    ids=lambda v: v.isoformat() if isinstance(v, date) else str(v),
)
def test_bank_holidays_and_working_days(day: date, holiday: bool, working: bool) -> None:
    assert is_bank_holiday(day) is holiday
    assert is_working_day(day) is working


@pytest.mark.parametrize("day", [date(1999, 12, 31), date(2101, 1, 1)])
def test_bank_holiday_outside_calendar_is_refused(day: date) -> None:
    with pytest.raises(ValueError, match="outside the bank-holiday calendar"):
        is_bank_holiday(day)


@pytest.mark.parametrize(
    ("start", "count", "expected"),
    [
        (date(2026, 6, 13), 0, date(2026, 6, 13)),  # zero working days: the start day, even a Saturday
        (date(2026, 6, 12), 1, date(2026, 6, 15)),  # Fri -> Mon
        (date(2026, 6, 13), 1, date(2026, 6, 15)),  # Sat -> Mon (start never counts)
        (date(2026, 6, 8), 7, date(2026, 6, 17)),  # Mon -> Wed of the following week
        (date(2026, 8, 28), 1, date(2026, 9, 1)),  # Fri -> Tue, over the summer bank holiday
        (date(2026, 12, 24), 1, date(2026, 12, 29)),  # over Fri 25 and the Mon 28 substitute
        (date(2026, 12, 24), 7, date(2027, 1, 7)),
        (date(2027, 12, 24), 1, date(2027, 12, 29)),  # over the Mon 27 and Tue 28 substitutes
        (date(2027, 12, 24), 7, date(2028, 1, 7)),
        (date(2027, 12, 31), 1, date(2028, 1, 4)),  # over the Mon 3 Jan substitute
        (date(2027, 3, 25), 1, date(2027, 3, 30)),  # over Good Friday and Easter Monday
        (date(2027, 3, 25), 7, date(2027, 4, 7)),
    ],
    ids=lambda v: v.isoformat() if isinstance(v, date) else str(v),
)
def test_add_working_days(start: date, count: int, expected: date) -> None:
    assert add_working_days(start, count) == expected


# ----------------------------------------------------------------------------- read aloud to a caller


@pytest.mark.parametrize(
    ("instant", "spoken"),
    [
        # A form due at midnight is due by the end of the day before: what the caller must hear.
        ("2026-12-05T00:00:00+00:00", "the end of Friday 4 December 2026"),
        ("2026-12-04T23:59:00+00:00", "Friday 4 December 2026 at 11:59pm"),
        ("2026-12-05T00:01:00+00:00", "Saturday 5 December 2026 at 12:01am"),
        # Midnight in London during summer time is 23:00 UTC the day before.
        ("2027-06-10T23:00:00+00:00", "the end of Thursday 10 June 2027"),
        ("2026-12-01T12:00:00+00:00", "Tuesday 1 December 2026 at midday"),
        ("2026-12-01T18:03:48+00:00", "Tuesday 1 December 2026 at 6:03pm"),
        ("2026-12-01T09:00:00+00:00", "Tuesday 1 December 2026 at 9am"),
    ],
)
def test_instants_are_described_as_an_officer_reads_them_aloud(instant: str, spoken: str) -> None:
    assert describe(datetime.fromisoformat(instant)) == spoken


def test_dates_are_written_as_gov_uk_writes_them() -> None:
    assert long_date(date(2019, 6, 21)) == "21 June 2019"
    assert long_date(date(2000, 1, 1)) == "1 January 2000"
