"""ContactBrokeringWorkflow: one request to broker contact with a shielded child, from the ask to its outcome.

It waits, durably, for a manager to take the request; until one does, it reminds the managers each period
(routine: two working days, urgent: an hour; `shielding.brokering.reminder_due_at`), for as long as it takes:
silence never closes it. Once taken it sends no more reminders and waits for the outcome (reading the store
once a day, in case the service's signal was lost).

Its history holds only the contact request's id, urgency, counts and flags. Staff act in PostgreSQL through the
service (`starter.brokering`), which then signals `changed`; the signal carries nothing and is trusted for
nothing: the workflow reads where the request is from the store (an activity), so a forged signal costs one read.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.brokering import BrokeringActivities
    from shielding.brokering import (
        BrokeringInput,
        BrokeringResult,
        BrokeringState,
        ContactState,
        ReminderInput,
        StateInput,
    )

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# How often a taken request's workflow reads the store, should the service's signal that closed it have been lost.
TAKEN_RECHECK = timedelta(days=1)
# Retry for as long as it takes: a reminder must not be dropped because the database blinked.
ACTIVITY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5))


@workflow.defn
class ContactBrokeringWorkflow:
    @workflow.init
    def __init__(self, params: BrokeringInput) -> None:
        self._state = params.state or BrokeringState(
            contact_request_id=params.contact_request_id, urgency=params.urgency, since=workflow.now()
        )
        self._wake = False

    @workflow.run
    async def run(self, params: BrokeringInput) -> BrokeringResult:
        state = self._state
        while not state.closed:
            due = state.next_reminder_at()
            if due is None:  # taken: no reminders; look in the store now and then, in case a signal was lost
                timeout, summary = TAKEN_RECHECK, "check whether the taken request is closed"
            else:
                timeout, summary = due - workflow.now(), f"reminder {state.reminders + 1} ({state.urgency.value})"
            fired = due is not None and timeout <= timedelta(0)
            if not fired:
                try:
                    await workflow.wait_condition(lambda: self._wake, timeout=timeout, timeout_summary=summary)
                except TimeoutError:
                    fired = due is not None
            if fired:
                number = state.reminders + 1
                result = await workflow.execute_activity_method(
                    BrokeringActivities.remind_managers,
                    ReminderInput(
                        contact_request_id=state.contact_request_id,
                        number=number,
                        operation_key=f"{state.contact_request_id}:reminder:{number}",
                    ),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=ACTIVITY_RETRY,
                    summary=f"reminder {number}",
                )
                if result.sent:
                    state.reminders = number
                self._apply(result)
            else:
                self._wake = False
                self._apply(
                    await workflow.execute_activity_method(
                        BrokeringActivities.contact_request_state,
                        StateInput(contact_request_id=state.contact_request_id),
                        start_to_close_timeout=ACTIVITY_TIMEOUT,
                        retry_policy=ACTIVITY_RETRY,
                    )
                )
            if not state.closed and workflow.info().is_continue_as_new_suggested():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    BrokeringInput(contact_request_id=state.contact_request_id, urgency=state.urgency, state=state)
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return BrokeringResult(
            contact_request_id=state.contact_request_id, outcome=state.outcome, reminders=state.reminders
        )

    def _apply(self, found: ContactState) -> None:
        self._state.taken = self._state.taken or found.taken
        self._state.closed = found.closed
        self._state.outcome = found.outcome

    @workflow.signal
    def changed(self) -> None:
        """The service changed the request in the store (taken, closed): look again. Carries nothing."""
        self._wake = True

    @workflow.query
    def status(self) -> BrokeringState:
        return self._state
