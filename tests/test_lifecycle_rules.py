"""The lifecycle's pure rules (`shielding.lifecycle`), without a server: timers, what is due, stages, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shielding import deadlines
from shielding.domain import ReviewDecision, ReviewDecisionKind, ReviewKind, Stage
from shielding.lifecycle import REMINDER_INTERVAL, REVIEWS_KEPT, Due, LifecycleState, review_due_at

CALLED = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)  # a Tuesday
SHIELDED = CALLED + timedelta(seconds=2)
FORM_DUE = deadlines.form_due_at(CALLED)
SEVEN_DAY = review_due_at(SHIELDED, 0)
SECOND = timedelta(seconds=1)


def shielded(**changes: object) -> LifecycleState:
    """A request just shielded at intake, awaiting its form."""
    state = LifecycleState(
        request_id="SR-ABCDEFGH2345",
        stage=Stage.AWAITING_FORM,
        received_by="officer-1",
        called_at=CALLED,
        shielded_at=SHIELDED,
        form_due_at=FORM_DUE,
    )
    return state.model_copy(update=changes)


def approve(actor: str = "reviewer-1") -> ReviewDecision:
    return ReviewDecision(decision=ReviewDecisionKind.APPROVE, actor=actor)


def test_the_first_timer_is_the_seven_day_review_then_the_form_deadline():
    # Seven calendar days come before seven working days: the review falls due while the form may be awaited.
    assert SEVEN_DAY < FORM_DUE
    assert shielded().next_timer_at() == SEVEN_DAY
    assert shielded(next_review_index=1).next_timer_at() == FORM_DUE
    assert shielded().time_to_next_timer(SEVEN_DAY + SECOND) == timedelta(0)
    assert shielded().time_to_next_timer(SEVEN_DAY - SECOND) == SECOND


def test_the_form_deadline_lapses_the_request_only_once_it_has_passed():
    state = shielded(next_review_index=1)
    assert state.due(FORM_DUE - SECOND) == Due.NOTHING
    assert state.due(FORM_DUE) == Due.LAPSE


def test_a_passed_form_deadline_lapses_before_any_review():
    assert shielded().due(FORM_DUE) == Due.LAPSE


def test_a_form_being_recorded_holds_off_the_lapse_it_races():
    assert shielded(next_review_index=1).due(FORM_DUE, form_arriving=True) == Due.NOTHING


def test_a_received_form_means_the_deadline_never_lapses_and_the_review_falls_due_on_time():
    state = shielded(form_received_at=CALLED + timedelta(days=1))
    assert state.due(SEVEN_DAY - SECOND) == Due.NOTHING
    assert state.due(SEVEN_DAY) == Due.REVIEW
    approved = shielded(form_received_at=CALLED + timedelta(days=1), next_review_index=1)
    assert approved.due(FORM_DUE + timedelta(days=1)) == Due.NOTHING


def test_an_overdue_review_sends_reminders_a_day_apart_and_never_unshields():
    state = shielded(form_received_at=CALLED + timedelta(days=1))
    state.review_fell_due(SEVEN_DAY)
    assert state.derived_stage() == Stage.REVIEW_DUE
    assert state.next_timer_at() == SEVEN_DAY + REMINDER_INTERVAL
    assert state.due(SEVEN_DAY + REMINDER_INTERVAL - SECOND) == Due.NOTHING
    assert state.due(SEVEN_DAY + REMINDER_INTERVAL) == Due.REMINDER
    state.reminder_sent(SEVEN_DAY + REMINDER_INTERVAL)
    assert state.reminders_sent == 1
    assert state.next_reminder_at == SEVEN_DAY + 2 * REMINDER_INTERVAL


def test_a_worker_down_for_days_sends_one_reminder_then_waits_a_full_interval():
    state = shielded(form_received_at=CALLED + timedelta(days=1))
    state.review_fell_due(SEVEN_DAY)
    back = SEVEN_DAY + timedelta(days=5)
    state.reminder_sent(back)
    assert state.due(back) == Due.NOTHING
    assert state.next_reminder_at == back + REMINDER_INTERVAL


def test_approving_the_seven_day_review_schedules_the_six_month_review():
    state = shielded(form_received_at=CALLED + timedelta(days=1))
    state.review_fell_due(SEVEN_DAY)
    kind = state.record_decision(approve(), SEVEN_DAY + SECOND)
    state.approve_review()
    assert kind == ReviewKind.SEVEN_DAY
    assert state.next_review_kind == ReviewKind.SIX_MONTH
    assert state.next_review_at() == deadlines.review_6_month_at(SHIELDED, 1)
    assert state.derived_stage() == Stage.SHIELDED
    assert state.reviews[-1].actor == "reviewer-1"


def test_only_the_last_reviews_are_carried():
    state = shielded(form_received_at=CALLED)
    for n in range(REVIEWS_KEPT + 3):
        state.review_fell_due(SEVEN_DAY)
        state.record_decision(approve(f"reviewer-{n}"), SEVEN_DAY)
        state.approve_review()
    assert len(state.reviews) == REVIEWS_KEPT
    assert state.reviews[-1].actor == f"reviewer-{REVIEWS_KEPT + 2}"


@pytest.mark.parametrize(
    ("changes", "now", "arriving", "expected"),
    [
        ({}, FORM_DUE - SECOND, False, None),
        ({}, FORM_DUE, False, "arrived after its deadline"),
        ({"stage": Stage.INTAKE}, CALLED, False, "still being taken"),
        ({"stage": Stage.LAPSED}, CALLED, False, "is closed (lapsed)"),
        ({"form_received_at": CALLED}, CALLED, False, "already been received"),
        ({}, CALLED, True, "already been received"),
    ],
)
def test_form_refusals(changes, now, arriving, expected):
    refusal = shielded(**changes).form_refusal(now, form_arriving=arriving)
    assert refusal == expected if expected is None else expected in (refusal or "")


def test_review_refusals_on_each_side_of_the_rules():
    state = shielded(form_received_at=CALLED)
    assert "No review is due" in (state.review_refusal(approve()) or "")
    state.review_fell_due(SEVEN_DAY)
    assert state.review_refusal(approve()) is None
    assert state.review_refusal(approve(actor="officer-1")) == (
        "A reviewer cannot decide the review of a request they took themselves."
    )
    unshield = ReviewDecision(decision=ReviewDecisionKind.UNSHIELD, actor="reviewer-1")
    assert state.review_refusal(unshield) == "A decision to unshield needs a reason."
    closed = shielded(stage=Stage.UNSHIELDED)
    assert "nothing to review" in (closed.review_refusal(approve()) or "")


def test_unshield_refusals():
    assert shielded().unshield_refusal() is None
    assert "still being taken" in (shielded(stage=Stage.INTAKE).unshield_refusal() or "")
    assert "already closed (lapsed)" in (shielded(stage=Stage.LAPSED).unshield_refusal() or "")


def test_closing_clears_the_review_and_reminder_and_stops_every_timer():
    state = shielded(form_received_at=CALLED)
    state.review_fell_due(SEVEN_DAY)
    state.close(Stage.UNSHIELDED, "risk ended")
    assert state.derived_stage() == Stage.UNSHIELDED
    assert state.next_review_at() is None and state.form_due_shown() is None
    assert state.due(SEVEN_DAY + timedelta(days=400)) == Due.NOTHING


def test_the_form_deadline_is_shown_only_while_it_matters():
    assert shielded().form_due_shown() == FORM_DUE
    assert shielded(form_received_at=CALLED).form_due_shown() is None
    assert shielded(stage=Stage.LAPSED).form_due_shown() is None
