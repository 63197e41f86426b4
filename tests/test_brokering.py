"""Brokering contact with a shielded child: reminders on the time-skipping server (each side of each period),
who may ask, take and close, what the person who asked is told, and what never leaves PostgreSQL.

The time-skipping server has no updates; brokering needs none (staff act in PostgreSQL through the service,
which signals the workflow), so `ShieldingService` runs here against it unchanged.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import string
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog
import structlog.testing
from google.protobuf import json_format
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.brokering import BrokeringActivities
from activities.models import ShieldRecordInput
from activities.shielding import ShieldingActivities
from shielding import access, deadlines, store
from shielding.brokering import (
    ROUTINE_REMINDER_WORKING_DAYS,
    BrokeringInput,
    BrokeringState,
    ContactOutcome,
    ContactRequestView,
    ContactStatus,
    Urgency,
    new_contact_request_id,
    reminder_due_at,
)
from shielding.codec import codec_from_settings
from shielding.domain import Address, Carer, ChildRecord, Gender
from shielding.settings import Settings
from shielding.store import brokering as brokering_store
from shielding.store.brokering import contact_notifications
from shielding.temporal import data_converter
from starter import Refusal, ShieldingService
from tests.helpers.api import client, sign_in
from tests.helpers.devstack import base_env
from tests.helpers.lifecycle import advance_to, eventually, intake
from tests.helpers.people import grant, unique_name
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS
from tests.helpers.webapp import RunningApp, add_staff
from worker.main import build_worker, workflow_runner
from workflows.contact_brokering import ContactBrokeringWorkflow

JUST = timedelta(minutes=1)
PRACTITIONER = frozenset({"practitioner"})
MANAGER = frozenset({"manager"})


# ------------------------------------------------------------------------------------ pure rules


@pytest.mark.parametrize(
    ("asked", "due"),
    [
        # Wednesday -> Friday, same London time.
        (datetime(2026, 12, 2, 10, 0, tzinfo=UTC), datetime(2026, 12, 4, 10, 0, tzinfo=UTC)),
        # Friday -> Tuesday (the weekend does not count).
        (datetime(2026, 12, 4, 16, 30, tzinfo=UTC), datetime(2026, 12, 8, 16, 30, tzinfo=UTC)),
        # Thursday 24 December -> Tuesday 29 December (Christmas and the Boxing Day substitute do not count).
        (datetime(2026, 12, 24, 9, 0, tzinfo=UTC), datetime(2026, 12, 30, 9, 0, tzinfo=UTC)),
        # Saturday -> Tuesday.
        (datetime(2026, 12, 5, 11, 0, tzinfo=UTC), datetime(2026, 12, 8, 11, 0, tzinfo=UTC)),
        # Across the autumn clock change: the same London wall-clock time (10am BST -> 10am GMT).
        (datetime(2026, 10, 23, 9, 0, tzinfo=UTC), datetime(2026, 10, 27, 10, 0, tzinfo=UTC)),
        # Thursday before Easter 2027 -> Wednesday (Good Friday and Easter Monday do not count), 10am GMT -> BST.
        (datetime(2027, 3, 25, 10, 0, tzinfo=UTC), datetime(2027, 3, 31, 9, 0, tzinfo=UTC)),
    ],
)
def test_routine_reminder_falls_due_two_working_days_later(asked: datetime, due: datetime) -> None:
    assert reminder_due_at(Urgency.ROUTINE, asked, 1) == due
    assert reminder_due_at(Urgency.ROUTINE, asked, 2) == deadlines.working_days_later(
        asked, 2 * ROUTINE_REMINDER_WORKING_DAYS
    )


def test_urgent_reminders_fall_due_each_hour_and_taking_stops_them() -> None:
    asked = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    assert reminder_due_at(Urgency.URGENT, asked, 1) == asked + timedelta(hours=1)
    assert reminder_due_at(Urgency.URGENT, asked, 3) == asked + timedelta(hours=3)
    state = BrokeringState(contact_request_id="CR-AAAAAAAAAAAA", urgency=Urgency.URGENT, since=asked, reminders=2)
    assert state.next_reminder_at() == asked + timedelta(hours=3)
    assert state.model_copy(update={"taken": True}).next_reminder_at() is None


# ------------------------------------------------------------------------------------ the world


def _letters(n: int) -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(n))


@dataclass
class Canaries:
    address: str
    postcode: str
    carer: str
    carer_phone: str
    school: str
    gp: str
    reason: str
    purpose: str

    @classmethod
    def new(cls) -> Canaries:
        tag = _letters(8)
        return cls(
            address=f"{tag.capitalize()} Mews Canaryaddress",
            postcode="ZZ9 9ZZ",
            carer=f"Carer{tag.capitalize()} Canarycarer",
            carer_phone="020 7946 9191",
            school=f"Canaryschool {tag} Academy",
            gp=f"Canarygp {tag} Surgery",
            reason=f"Canaryreason {tag}: father traced the family to the refuge",
            purpose=f"Canarypurpose {tag}: the school nurse needs to reach the mother",
        )

    def values(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class World:
    env: WorkflowEnvironment
    pool: asyncpg.Pool
    service: ShieldingService
    child: ChildRecord
    canaries: Canaries
    practitioner: str
    other_practitioner: str
    asking_manager: str
    manager: str
    other_manager: str
    operations: str
    last: str = ""

    async def ask(self, urgency: Urgency = Urgency.ROUTINE, *, by: str | None = None, **kw: Any) -> ContactRequestView:
        fields: dict[str, Any] = {"purpose": self.canaries.purpose, "email": "nurse@school.example.org", "phone": None}
        fields.update(kw)
        actor = by or self.practitioner
        roles = MANAGER if actor in (self.manager, self.asking_manager, self.other_manager) else PRACTITIONER
        return await self.service.ask_contact(self.child.uid, urgency=urgency, actor=actor, roles=roles, **fields)

    def handle(self, contact_request_id: str) -> WorkflowHandle[Any, Any]:
        return self.env.client.get_workflow_handle_for(ContactBrokeringWorkflow.run, contact_request_id)

    async def state(self, contact_request_id: str) -> BrokeringState:
        return await self.handle(contact_request_id).query(ContactBrokeringWorkflow.status)  # type: ignore[no-any-return]

    async def reminders(self, contact_request_id: str) -> list[dict[str, Any]]:
        rows = await contact_notifications(self.pool, contact_request_id)
        return [r for r in rows if r["template"] == "contact-reminder"]

    async def reminders_reach(self, contact_request_id: str, count: int) -> list[dict[str, Any]]:
        return await eventually(  # type: ignore[no-any-return]
            lambda: self.reminders(contact_request_id), lambda rows: len(rows) >= count
        )


def canary_child(canaries: Canaries) -> ChildRecord:
    base = make_child(gender=Gender.FEMALE)
    return base.model_copy(
        update={
            "address": Address(lines=[canaries.address, "London"], postcode=canaries.postcode),
            "carers": [Carer(name=canaries.carer, relationship="mother", phone=canaries.carer_phone)],
            "school": canaries.school,
            "gp_practice": canaries.gp,
        }
    )


async def shield(pool: asyncpg.Pool, uid: str, reason: str) -> str:
    """Shield `uid` as the intake activity does (the store's own step; the lifecycle is tested elsewhere)."""
    now = datetime.now(UTC)
    request = intake([uid], now, reason=reason)
    command = ShieldRecordInput(
        request=request, form_due_at=deadlines.form_due_at(now), operation_key=f"{request.request_id}:1:shield"
    )
    result = await store.shield_request(pool, command, command.operation_key)
    assert result.children and result.children[0].shielded, result
    return request.request_id


@pytest.fixture
async def world(
    time_env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings, task_queue: str
) -> AsyncIterator[World]:
    canaries = Canaries.new()
    child = canary_child(canaries)
    await store.import_children(pool, [child], actor="test-import")
    await shield(pool, child.uid, canaries.reason)
    people = {
        "practitioner": await grant(pool, unique_name("pract"), "practitioner"),
        "other_practitioner": await grant(pool, unique_name("pract"), "practitioner"),
        "asking_manager": await grant(pool, unique_name("mgr"), "manager"),
        "manager": await grant(pool, unique_name("mgr"), "manager"),
        "other_manager": await grant(pool, unique_name("mgr"), "manager"),
        "operations": await grant(pool, unique_name("ops"), "operations"),
    }
    service = ShieldingService(
        time_env.client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
    )
    worker = build_worker(
        time_env.client,
        ShieldingActivities(pool),
        settings.model_copy(update={"task_queue": task_queue}),
        brokering=BrokeringActivities(pool),
    )
    async with worker:
        yield World(time_env, pool, service, child, canaries, **people)


# ------------------------------------------------------------------------------------ reminders


async def test_routine_request_is_reminded_after_two_working_days_then_again_escalated(world: World) -> None:
    asked = await world.ask(Urgency.ROUTINE)
    state = await world.state(asked.contact_request_id)
    first = deadlines.working_days_later(state.since, 2)
    assert state.next_reminder_at() == first
    # The managers were told when it was asked: its id and urgency only.
    told = await contact_notifications(world.pool, asked.contact_request_id)
    assert [(n["recipient_kind"], n["template"]) for n in told] == [("managers", "contact-request")]

    await advance_to(world.env, first, -JUST)
    assert await world.reminders(asked.contact_request_id) == []
    await advance_to(world.env, first, JUST)
    (reminder,) = await world.reminders_reach(asked.contact_request_id, 1)
    assert reminder["recipient_kind"] == "managers" and "Reminder 1" in reminder["subject"]
    assert "ESCALATED" not in reminder["subject"]

    second = deadlines.working_days_later(state.since, 4)
    await advance_to(world.env, second, -JUST)
    assert len(await world.reminders(asked.contact_request_id)) == 1
    await advance_to(world.env, second, JUST)
    rows = await world.reminders_reach(asked.contact_request_id, 2)
    assert rows[1]["subject"].startswith("ESCALATED Reminder 2")
    assert "4 working days" in rows[1]["body"]
    seen = await world.service.contact_request(asked.contact_request_id, actor=world.manager, roles=MANAGER)
    assert seen.reminders == 2 and seen.status == ContactStatus.WAITING


async def test_urgent_request_is_reminded_each_hour_until_taken_and_closing_completes_it(world: World) -> None:
    asked = await world.ask(Urgency.URGENT)
    cr = asked.contact_request_id
    state = await world.state(cr)
    first = state.since + timedelta(hours=1)
    await advance_to(world.env, first, -JUST)
    assert await world.reminders(cr) == []
    await advance_to(world.env, first, JUST)
    await world.reminders_reach(cr, 1)
    await advance_to(world.env, first + timedelta(hours=1), -JUST)
    assert len(await world.reminders(cr)) == 1
    await advance_to(world.env, first + timedelta(hours=1), JUST)
    await world.reminders_reach(cr, 2)

    taken = await world.service.take_contact(cr, actor=world.manager, roles=MANAGER)
    assert taken.status == ContactStatus.TAKEN and taken.hidden is not None
    await eventually(lambda: world.state(cr), lambda s: s.taken)
    # Taking stops the reminders: nothing more, however long it waits (silence never closes it either).
    await world.env.sleep(timedelta(hours=10))
    assert len(await world.reminders(cr)) == 2
    assert (await world.state(cr)).closed is False

    closed = await world.service.close_contact(
        cr, outcome="passed-on", reason="Spoke to the refuge manager", actor=world.manager, roles=MANAGER
    )
    assert closed.status == ContactStatus.CLOSED and closed.outcome == ContactOutcome.PASSED_ON
    result = await world.handle(cr).result()
    assert result.outcome == ContactOutcome.PASSED_ON and result.reminders == 2


async def test_a_request_taken_before_its_first_reminder_is_never_reminded(world: World) -> None:
    asked = await world.ask(Urgency.URGENT)
    cr = asked.contact_request_id
    await world.service.take_contact(cr, actor=world.manager, roles=MANAGER)
    await eventually(lambda: world.state(cr), lambda s: s.taken)
    await world.env.sleep(timedelta(hours=5))
    assert await world.reminders(cr) == []


async def test_a_signal_from_anyone_changes_nothing_and_the_history_replays(world: World, settings: Settings) -> None:
    """`changed` carries nothing: the workflow looks in the store, finds the request still waiting, and reminds."""
    asked = await world.ask(Urgency.URGENT)
    cr = asked.contact_request_id
    await world.handle(cr).signal(ContactBrokeringWorkflow.changed)
    state = await eventually(lambda: world.state(cr), lambda s: s.reminders == 0)
    assert not state.taken and not state.closed
    await advance_to(world.env, state.since + timedelta(hours=1), JUST)
    await world.reminders_reach(cr, 1)
    await world.service.take_contact(cr, actor=world.manager, roles=MANAGER)
    await world.service.close_contact(cr, outcome="declined", reason="No", actor=world.manager, roles=MANAGER)
    await world.handle(cr).result()

    history = await world.handle(cr).fetch_history()
    replayer = Replayer(
        workflows=[ContactBrokeringWorkflow],
        namespace=world.env.client.namespace,
        data_converter=data_converter(settings),
        workflow_runner=workflow_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None


async def test_a_workflow_whose_request_was_never_recorded_ends_at_its_first_reminder(
    world: World, task_queue: str
) -> None:
    """The service starts the workflow before it records the request; had recording failed (and the workflow's
    termination been lost too), the first reminder finds no request and ends the workflow, telling nobody."""
    cr = new_contact_request_id()
    handle = await world.env.client.start_workflow(
        ContactBrokeringWorkflow.run,
        BrokeringInput(contact_request_id=cr, urgency=Urgency.URGENT),
        id=cr,
        task_queue=task_queue,
    )
    await world.env.sleep(timedelta(hours=1, minutes=1))
    result = await handle.result()
    assert result.reminders == 0 and result.outcome is None
    assert await contact_notifications(world.pool, cr) == []


async def test_a_close_whose_signal_was_lost_still_ends_the_workflow_within_a_day(world: World) -> None:
    asked = await world.ask(Urgency.ROUTINE)
    cr = asked.contact_request_id
    await world.service.take_contact(cr, actor=world.manager, roles=MANAGER)
    await eventually(lambda: world.state(cr), lambda s: s.taken)
    # Closed in the store with no signal (as if the workflow service had been unreachable just then).
    await brokering_store.close(world.pool, cr, world.manager, ContactOutcome.DECLINED, "No contact wanted")
    await world.env.sleep(timedelta(hours=23))
    assert (await world.state(cr)).closed is False
    await world.env.sleep(timedelta(hours=2))
    result = await world.handle(cr).result()
    assert result.outcome == ContactOutcome.DECLINED and result.reminders == 0


# ---------------------------------------------------------------------------------- permissions


async def _refusals(pool: asyncpg.Pool, contact_request_id: str | None, actor: str) -> list[str]:
    rows = await pool.fetch(
        """SELECT reason FROM audit_log WHERE action = 'unauthorised' AND actor = $1
           AND ($2::text IS NULL OR request_id = $2) ORDER BY entry_id""",
        actor,
        contact_request_id,
    )
    return [r["reason"] for r in rows]


async def test_who_may_ask_take_see_and_close(world: World) -> None:
    service = world.service
    # Operations run the service; they do not ask for contact (refused, audited under the child).
    with pytest.raises(access.AccessDenied, match="may not ask contact"):
        await service.ask_contact(
            world.child.uid,
            purpose="x",
            urgency="routine",
            email="a@b.example",
            phone=None,
            actor=world.operations,
            roles=frozenset({"operations"}),
        )
    assert await _refusals(world.pool, None, world.operations)

    asked = await world.ask(Urgency.ROUTINE, by=world.asking_manager)
    cr = asked.contact_request_id
    # A practitioner may not take one.
    with pytest.raises(access.AccessDenied, match="may not broker contact"):
        await service.take_contact(cr, actor=world.practitioner, roles=PRACTITIONER)
    # Nor see someone else's.
    with pytest.raises(access.AccessDenied, match="did not ask for"):
        await service.contact_request(cr, actor=world.other_practitioner, roles=PRACTITIONER)
    # The manager who asked may not take their own request.
    with pytest.raises(access.AccessDenied, match="cannot take it"):
        await service.take_contact(cr, actor=world.asking_manager, roles=MANAGER)
    assert any("cannot take it" in r for r in await _refusals(world.pool, cr, world.asking_manager))

    taken = await service.take_contact(cr, actor=world.manager, roles=MANAGER)
    assert taken.hidden is not None and taken.purpose == world.canaries.purpose
    # Another manager cannot take it again, see its hidden details, or close it.
    with pytest.raises(Refusal, match="already been taken"):
        await service.take_contact(cr, actor=world.other_manager, roles=MANAGER)
    other_view = await service.contact_request(cr, actor=world.other_manager, roles=MANAGER)
    assert other_view.hidden is None and other_view.purpose is None
    with pytest.raises(access.AccessDenied, match="did not take"):
        await service.close_contact(cr, outcome="declined", reason="no", actor=world.other_manager, roles=MANAGER)
    assert any("did not take" in r for r in await _refusals(world.pool, cr, world.other_manager))
    # Closing needs an outcome and a reason.
    with pytest.raises(Refusal, match="Select the outcome"):
        await service.close_contact(cr, outcome="maybe", reason="x", actor=world.manager, roles=MANAGER)
    with pytest.raises(Refusal, match="Enter the reason"):
        await service.close_contact(cr, outcome="declined", reason="  ", actor=world.manager, roles=MANAGER)

    closed = await service.close_contact(
        cr, outcome="declined", reason="Family asked for no contact", actor=world.manager, roles=MANAGER
    )
    assert closed.status == ContactStatus.CLOSED
    with pytest.raises(Refusal, match="already closed"):
        await service.close_contact(cr, outcome="declined", reason="again", actor=world.manager, roles=MANAGER)
    # Once closed, nobody sees the hidden details any more.
    assert (await service.contact_request(cr, actor=world.manager, roles=MANAGER)).hidden is None

    entries = await store.audit_entries(world.pool, request_id=cr)
    actions = [e["action"] for e in entries]
    for action in ("contact-asked", "contact-taken", "contact-details-viewed", "contact-closed"):
        assert action in actions
    assert all(e["child_uid"] == world.child.uid for e in entries)
    # And under the child.
    by_child = {e["entry_id"] for e in await store.audit_entries(world.pool, child_uid=world.child.uid)}
    assert {e["entry_id"] for e in entries} <= by_child


async def test_asking_is_refused_in_words_for_an_unshielded_child_and_missing_details(world: World) -> None:
    plain = make_child()
    await store.import_children(world.pool, [plain], actor="test-import")
    service = world.service
    ask: dict[str, Any] = {"urgency": "routine", "actor": world.practitioner, "roles": PRACTITIONER}
    with pytest.raises(Refusal, match="is not shielded"):
        await service.ask_contact(plain.uid, purpose="p", email="a@b.example", phone=None, **ask)
    with pytest.raises(Refusal, match="No child in the directory"):
        await service.ask_contact(f"C-{uuid.uuid4().hex[:10]}", purpose="p", email="a@b.example", phone=None, **ask)
    with pytest.raises(Refusal, match="Enter why"):
        await service.ask_contact(world.child.uid, purpose=" ", email="a@b.example", phone=None, **ask)
    with pytest.raises(Refusal, match="email address or phone number"):
        await service.ask_contact(world.child.uid, purpose="p", email=None, phone=None, **ask)
    with pytest.raises(Refusal, match="correct format"):
        await service.ask_contact(world.child.uid, purpose="p", email="not-an-address", phone=None, **ask)
    with pytest.raises(Refusal, match="urgent or routine"):
        await service.ask_contact(
            world.child.uid, purpose="p", email="a@b.example", phone=None, **{**ask, "urgency": "soon"}
        )
    with pytest.raises(Refusal, match="not a contact request id"):
        await service.contact_request("CR-../../etc", actor=world.manager, roles=MANAGER)


# ------------------------------------------------------------------------------------ privacy


def _payloads(message: Message) -> Iterator[Payload]:
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE:
            continue
        if isinstance(value, Message):
            yield from _payloads(value)
        elif hasattr(value, "items"):
            for item in value.values():
                if isinstance(item, Message):
                    yield from _payloads(item)
        else:
            for item in value:
                yield from _payloads(item)


def _leaks(text: str, canaries: Canaries) -> list[str]:
    lowered = text.lower()
    return [name for name, value in canaries.values().items() if value.lower() in lowered]


async def test_the_asker_is_told_the_outcome_and_nothing_leaves_postgresql(world: World, settings: Settings) -> None:
    with structlog.testing.capture_logs() as logged:
        await _ask_remind_take_close(world)
    # What every log call was given (before the allow-list even filters it): ids and counts, no canary.
    assert logged and _leaks(repr(logged), world.canaries) == []
    assert "020 7946 1234" not in repr(logged)
    await _check_nothing_left_postgresql(world, settings)


async def _ask_remind_take_close(world: World) -> None:
    asked = await world.ask(Urgency.URGENT, email=None, phone="020 7946 1234")
    world.last = asked.contact_request_id
    cr = asked.contact_request_id
    state = await world.state(cr)
    await advance_to(world.env, state.since + timedelta(hours=1), JUST)
    await world.reminders_reach(cr, 1)
    taken = await world.service.take_contact(cr, actor=world.manager, roles=MANAGER)
    # Positive control: the manager who took it does see what the record hides.
    assert taken.hidden is not None and world.canaries.address in taken.model_dump_json()
    await world.service.close_contact(
        cr,
        outcome="passed-on",
        reason=f"Rang the carer on {world.canaries.carer_phone} at {world.canaries.address}",
        actor=world.manager,
        roles=MANAGER,
    )
    await world.handle(cr).result()


async def _check_nothing_left_postgresql(world: World, settings: Settings) -> None:
    cr = world.last
    asked = await world.service.contact_request(cr, actor=world.practitioner, roles=PRACTITIONER)

    # The asker is told the outcome at the address they gave, and nothing else.
    told = await contact_notifications(world.pool, cr)
    to_asker = [n for n in told if n["recipient_kind"] == "practitioner"]
    assert [n["recipient"] for n in to_asker] == ["020 7946 1234"]
    assert "passed your details on" in to_asker[0]["body"]
    for notification in told:
        shown = f"{notification['subject']}\n{notification['body']}"
        assert _leaks(shown, world.canaries) == [], notification
        assert world.child.given_name not in shown and world.child.family_name not in shown

    # What the API answers the asker: progress and outcome, none of the details nor the manager's reason.
    views = [
        asked,
        await world.service.contact_request(cr, actor=world.practitioner, roles=PRACTITIONER),
        *await world.service.contact_requests(actor=world.practitioner, roles=PRACTITIONER),
    ]
    for view in views:
        assert _leaks(view.model_dump_json(), world.canaries) == [], view
        assert view.outcome_reason is None and view.hidden is None and view.taken_by is None
    assert views[1].outcome == ContactOutcome.PASSED_ON

    # The audit text beside the contact request names no hidden detail, purpose or shielding reason except the
    # manager's own words on closing (managers', reviewers' and child protection's audit, never the asker's).
    for entry in await store.audit_entries(world.pool, request_id=cr):
        if entry["action"] != "contact-closed":
            assert _leaks(str(entry), world.canaries) == [], entry

    # Temporal's history, every payload decoded: ids, urgency, counts and flags only.
    codec = codec_from_settings(settings)
    history = await world.handle(cr).fetch_history()
    decoded = []
    for event in history.events:
        decoded.append(json_format.MessageToJson(event))
        payloads = list(_payloads(event))
        if payloads:
            decoded.extend(p.data.decode("utf-8", "replace") for p in await codec.decode(payloads))
    text = "\n".join(decoded)
    assert _leaks(text, world.canaries) == []
    assert world.child.uid not in text and "020 7946 1234" not in text
    assert cr in text  # positive control: the payloads were decoded


# ------------------------------------------------------------------- end to end: API and CLI, dev server

PASSWORD = "correct-horse-battery-staple"


def _cli(app_url: str, home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = base_env(home / "data", SHIELDING_API_URL=app_url, SHIELDING_CREDENTIALS=str(home / "credentials.json"))
    return subprocess.run(
        ["shielding", *args], input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
    )


@pytest.mark.devserver
async def test_end_to_end_through_the_api_and_the_cli(
    dev_env: WorkflowEnvironment, pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    task_queue = f"tq-{uuid.uuid4().hex[:8]}"
    canaries = Canaries.new()
    child = canary_child(canaries)
    await store.import_children(pool, [child], actor="test-import")
    await shield(pool, child.uid, canaries.reason)
    practitioner = await add_staff(pool, unique_name("pract"), PASSWORD, "practitioner")
    asking_manager = await add_staff(pool, unique_name("mgr"), PASSWORD, "manager")
    manager = await add_staff(pool, unique_name("mgr"), PASSWORD, "manager")
    web_settings = settings.model_copy(
        update={"temporal_address": dev_env.client.service_client.config.target_host, "task_queue": task_queue}
    )
    worker = build_worker(
        dev_env.client,
        ShieldingActivities(pool),
        settings.model_copy(update={"task_queue": task_queue}),
        brokering=BrokeringActivities(pool),
    )
    async with worker:
        with RunningApp(web_settings) as app:
            tokens = {name: sign_in(app.url, name, PASSWORD) for name in (practitioner, asking_manager, manager)}
            as_pract = client(app.url, token=tokens[practitioner])
            as_asking = client(app.url, token=tokens[asking_manager])
            as_manager = client(app.url, token=tokens[manager])
            with as_pract, as_asking, as_manager:
                body = {"purpose": canaries.purpose, "urgency": "urgent", "email": "nurse@school.example.org"}
                missing = as_pract.post(f"/api/children/{child.uid}/contact-requests", json={**body, "email": None})
                assert missing.status_code == 422 and "email address or phone number" in missing.json()["detail"]
                extra = as_pract.post(
                    f"/api/children/{child.uid}/contact-requests", json={**body, "actor": asking_manager}
                )
                assert extra.status_code == 422  # nothing a caller sends names who acts
                asked = await asyncio.to_thread(as_pract.post, f"/api/children/{child.uid}/contact-requests", json=body)
                assert asked.status_code == 201, asked.text
                cr = asked.json()["contact_request_id"]
                assert cr not in str(asked.url) and canaries.purpose not in str(asked.url)

                queue = as_manager.get("/api/contact-requests").json()["contact_requests"]
                assert queue[0]["contact_request_id"] == cr  # urgent and open: first
                assert "purpose" not in queue[0] or queue[0]["purpose"] is None
                refused = as_pract.post(f"/api/contact-requests/{cr}/take")
                assert refused.status_code == 403 and "may not broker contact" in refused.json()["detail"]
                taken = as_manager.post(f"/api/contact-requests/{cr}/take")
                assert taken.status_code == 200, taken.text
                assert canaries.address in taken.text and taken.json()["purpose"] == canaries.purpose
                not_taker = as_asking.post(
                    f"/api/contact-requests/{cr}/close", json={"outcome": "declined", "reason": "x"}
                )
                assert not_taker.status_code == 403 and "did not take" in not_taker.json()["detail"]
                closed = as_manager.post(
                    f"/api/contact-requests/{cr}/close", json={"outcome": "passed-on", "reason": "Rang the refuge"}
                )
                assert closed.status_code == 200, closed.text
                told = as_pract.get(f"/api/contact-requests/{cr}")
                assert told.status_code == 200 and told.json()["outcome"] == "passed-on"
                assert _leaks(told.text, canaries) == [] and "Rang the refuge" not in told.text
                bad = as_manager.get("/api/contact-requests/not-an-id")
                assert bad.status_code == 422 and "not a contact request id" in bad.json()["detail"]

            result = await dev_env.client.get_workflow_handle_for(ContactBrokeringWorkflow.run, cr).result()
            assert result.outcome == ContactOutcome.PASSED_ON

            # The CLI, as the practitioner and a manager, against the same service.
            home_p, home_m = tmp_path / "pract", tmp_path / "mgr"
            for home, name in ((home_p, practitioner), (home_m, manager)):
                signed_in = await asyncio.to_thread(
                    _cli, app.url, home, "login", name, "--password-stdin", stdin=PASSWORD + "\n"
                )
                assert signed_in.returncode == 0, signed_in.stderr
            ask = await asyncio.to_thread(
                _cli, app.url, home_p, "contact", "request", child.uid, "--purpose", canaries.purpose,
                "--phone", "020 7946 1234", "--json",
            )  # fmt: skip
            assert ask.returncode == 0, ask.stderr
            cr2 = json.loads(ask.stdout)["contact_request_id"]
            listed = await asyncio.to_thread(_cli, app.url, home_m, "contact", "list", "--json")
            assert listed.returncode == 0 and cr2 in listed.stdout
            refused_cli = await asyncio.to_thread(_cli, app.url, home_p, "contact", "take", cr2)
            assert refused_cli.returncode == 1 and "may not broker contact" in refused_cli.stderr
            take = await asyncio.to_thread(_cli, app.url, home_m, "contact", "take", cr2)
            assert take.returncode == 0 and "HIDDEN DETAILS" in take.stdout and canaries.address in take.stdout
            close = await asyncio.to_thread(
                _cli, app.url, home_m, "contact", "close", cr2, "--outcome", "declined", "--reason", "Family refused"
            )
            assert close.returncode == 0, close.stderr
            shown = await asyncio.to_thread(_cli, app.url, home_p, "contact", "show", cr2, "--json")
            assert shown.returncode == 0 and json.loads(shown.stdout)["outcome"] == "declined"
            assert _leaks(shown.stdout, canaries) == [] and "Family refused" not in shown.stdout
