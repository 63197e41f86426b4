"""Siblings and co-residents: a shielded child's address and carers are withheld on every record that shares them.

A record that shares an address (normalised postcode and first line, its own or a carer's) or a carer (normalised
name and phone) with a shielded record shows neither while that record is shielded, on the view and in search;
a search by postcode or school never selects it; an import that brings a record to a shielded address or carer
is flagged to the shielded request's reviewers. At intake every such record needs a decision (added to the
request, or not and why), recorded in the audit log. Each test owns its records (unique canary values).
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from shielding import deadlines, store
from shielding.domain import Address, AuditAction, Carer, ChildRecord, Gender, Stage
from shielding.settings import Settings
from shielding.steps import LiftShield, ShieldChildren
from shielding.store.directory import related_records
from starter import Refusal, ShieldingService
from starter.validation import IntakeDraft, RelatedDraft, RelatedRecordsUndecided
from tests.helpers.lifecycle import draft, intake
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, running_worker
from tests.helpers.webapp import RunningApp, add_staff
from web.assets import ensure_frontend_installed
from web.pages.session import PRE_SESSION_FIELD


def _tag() -> str:
    return "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:10])


class Household:
    """A family's canary address and carer, unique to one test."""

    def __init__(self) -> None:
        tag = _tag()
        digits = str(uuid.uuid4().int)[:6]
        self.tag = tag
        self.family = f"Canarysib-{tag}"
        self.line_1 = f"{digits[:2]} Canary{tag} Street"
        self.postcode = f"ZQ{digits[2:4]} 9{tag[:2].upper()}"
        self.carer = f"Mara Carer{tag}"
        self.carer_phone = f"020 7{digits[:3]} {digits[3:6]}1"
        self.school = f"Canary{tag} Primary"

    def child(self, given: str, born: date, **fields: Any) -> ChildRecord:
        base = {
            "uid": f"C-{uuid.uuid4().hex[:12]}",
            "given_name": given,
            "family_name": self.family,
            "gender": Gender.FEMALE,
            "date_of_birth": born,
            "address": Address(lines=[self.line_1, "London"], postcode=self.postcode),
            "carers": [Carer(name=self.carer, relationship="mother", phone=self.carer_phone)],
            "school": self.school,
            "gp_practice": f"Canary{self.tag} Surgery",
        }
        return ChildRecord(**{**base, **fields})

    def hidden(self) -> list[str]:
        return [self.line_1, self.postcode, self.postcode.replace(" ", ""), self.carer, self.carer_phone]


async def shield(pool: asyncpg.Pool, uids: list[str]) -> str:
    request = intake(uids, datetime.now(UTC), actor="officer-intake")
    result = await store.shield_request(
        pool,
        ShieldChildren(request=request, form_due_at=deadlines.form_due_at(request.called_at)),
        f"{request.request_id}:1:shield",
    )
    assert result.stage == Stage.AWAITING_FORM
    return request.request_id


async def unshield(pool: asyncpg.Pool, request_id: str) -> None:
    await store.lift_shield(
        pool,
        LiftShield(
            request_id=request_id,
            action=AuditAction.UNSHIELDED,
            stage=Stage.UNSHIELDED,
            actor="reviewer-test",
            reason="risk ended",
        ),
        f"{request_id}:lift",
    )


def _shown(record: dict[str, Any] | None) -> str:
    return str(record)


# ------------------------------------------------------------------------------------- the read paths


async def test_a_sibling_at_a_shielded_address_shows_neither_address_nor_carer(pool: asyncpg.Pool) -> None:
    home = Household()
    shielded = home.child("Zainab", date(2019, 6, 21))
    sibling = home.child("Musa", date(2016, 2, 3), gender=Gender.MALE)
    elsewhere = make_child(family_name=home.family, date_of_birth=date(2016, 2, 3))  # same name part, other home
    await store.import_children(pool, [shielded, sibling, elsewhere], actor="test-import")

    before = await store.view_child(pool, sibling.uid)
    assert before is not None and before["address"]["postcode"] == home.postcode and before["withheld"] is False

    request_id = await shield(pool, [shielded.uid])
    view = await store.view_child(pool, sibling.uid)
    assert view is not None and view["shielded"] is False and view["withheld"] is True
    assert view["address"] is None and view["carers"] is None
    assert view["school"] == home.school  # only the shared details are withheld
    found = await store.search_children(
        pool, store.ChildSearch(family_name=home.family, date_of_birth=date(2016, 2, 3))
    )
    assert {r["uid"] for r in found} == {sibling.uid, elsewhere.uid}
    for record in found:
        for value in home.hidden():
            assert value not in _shown(record)
    # A record elsewhere with no shared detail is untouched.
    other = next(r for r in found if r["uid"] == elsewhere.uid)
    assert other["withheld"] is False and other["address"] is not None

    # Once the shield is lifted, the sibling's details are shown again.
    await unshield(pool, request_id)
    again = await store.view_child(pool, sibling.uid)
    assert again is not None and again["withheld"] is False and again["address"]["postcode"] == home.postcode


async def test_the_address_matches_however_it_is_written_and_a_carer_by_name_and_phone(pool: asyncpg.Pool) -> None:
    home = Household()
    shielded = home.child("Ada", date(2018, 1, 1))
    # The same address typed another way: lower case, no space in the postcode, "St" for "Street", a comma.
    respelled = home.line_1.replace("Street", "St,").lower()
    same_address = home.child(
        "Bea",
        date(2018, 2, 2),
        address=Address(lines=[respelled], postcode=home.postcode.replace(" ", "").lower()),
        carers=[],
    )
    # The same carer (name and phone as written elsewhere) at another address.
    same_carer = home.child(
        "Cai",
        date(2018, 3, 3),
        address=Address(lines=[f"1 Other{home.tag} Road"], postcode="ZQ1 1AA"),
        carers=[Carer(name=home.carer.upper(), phone=home.carer_phone.replace(" ", ""))],
    )
    # A carer whose own address is the shielded address.
    carer_lives_there = home.child(
        "Dov",
        date(2018, 4, 4),
        address=Address(lines=[f"2 Other{home.tag} Road"], postcode="ZQ1 1AB"),
        carers=[Carer(name=f"Someone Else{home.tag}", address=Address(lines=[home.line_1], postcode=home.postcode))],
    )
    # Near misses: the same street name at another postcode, the same carer name with another phone.
    other_postcode = home.child(
        "Eve", date(2018, 5, 5), address=Address(lines=[home.line_1], postcode="ZQ9 9ZZ"), carers=[]
    )
    other_phone = home.child(
        "Fay",
        date(2018, 6, 6),
        address=Address(lines=[f"3 Other{home.tag} Road"], postcode="ZQ1 1AC"),
        carers=[Carer(name=home.carer, phone="020 7000 0001")],
    )
    records = [shielded, same_address, same_carer, carer_lives_there, other_postcode, other_phone]
    await store.import_children(pool, records, actor="test-import")
    await shield(pool, [shielded.uid])
    withheld = {r.uid: (await store.view_child(pool, r.uid) or {}).get("withheld") for r in records[1:]}
    assert withheld == {
        same_address.uid: True,
        same_carer.uid: True,
        carer_lives_there.uid: True,
        other_postcode.uid: False,
        other_phone.uid: False,
    }


async def test_two_flats_of_one_building_are_two_addresses(pool: asyncpg.Pool) -> None:
    async def key(lines: list[str], postcode: str = "NW8 8LF") -> str | None:
        return await pool.fetchval("SELECT address_key($1::jsonb)", {"lines": lines, "postcode": postcode})

    flat_3 = await key(["Flat 3", "27 Lisson Grove", "London"])
    assert flat_3 == await key(["Flat 3, 27 Lisson Grove"]) == await key(["flat 3", "27 LISSON GROVE"], "nw88lf")
    assert flat_3 != await key(["Flat 4", "27 Lisson Grove", "London"])
    assert flat_3 != await key(["Flat 3", "29 Lisson Grove", "London"])
    assert await key(["12 Frampton Street", "London"]) == await key(["12 Frampton St."])
    assert await key(["12 Frampton Street"], "") is None and await key([], "NW8 8LF") is None


async def test_postcode_and_school_never_select_a_record_whose_details_are_withheld(pool: asyncpg.Pool) -> None:
    home = Household()
    shielded = home.child("Zara", date(2017, 7, 7))
    sibling = home.child("Yusuf", date(2017, 7, 7), gender=Gender.MALE)  # a twin: same date of birth
    await store.import_children(pool, [shielded, sibling], actor="test-import")
    by_name = {"family_name": home.family, "date_of_birth": date(2017, 7, 7)}

    async def found(**narrow: str) -> set[str]:
        return {r["uid"] for r in await store.search_children(pool, store.ChildSearch(**by_name, **narrow))}

    # Control: before the shield, postcode and school find both twins.
    assert await found(postcode=home.postcode) == await found(school=home.school) == {shielded.uid, sibling.uid}
    await shield(pool, [shielded.uid])
    assert await found() == {shielded.uid, sibling.uid}  # by name and date of birth: both, as before
    for narrow in ({"postcode": home.postcode}, {"postcode": home.postcode.replace(" ", "").lower()}):
        assert await found(**narrow) == set(), narrow
    assert await found(school=home.school) == set()
    assert await found(school=home.school.upper()) == set()
    # The same as a postcode nobody has: nothing to tell them apart.
    assert await found(postcode="ZZ9 9ZZ") == set()


# -------------------------------------------------------------------------------------------- imports


async def _flags(pool: asyncpg.Pool, request_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    entries = [
        e for e in await store.audit_entries(pool, request_id=request_id) if e["action"] == "shared-details-flagged"
    ]
    notes = [n for n in await store.notifications(pool, request_id) if "shares an address or a carer" in n["subject"]]
    return entries, notes


async def test_an_import_bringing_a_record_to_a_shielded_address_is_flagged_to_reviewers(pool: asyncpg.Pool) -> None:
    home = Household()
    shielded = home.child("Nia", date(2015, 5, 5))
    mover = make_child(date_of_birth=date(2012, 1, 1))
    await store.import_children(pool, [shielded, mover], actor="test-import")
    request_id = await shield(pool, [shielded.uid])
    assert await _flags(pool, request_id) == ([], [])

    moved = mover.model_copy(update={"address": Address(lines=[home.line_1], postcode=home.postcode)})
    result = await store.import_children(pool, [moved], actor="test-import")
    assert result.model_dump().keys() == {"imported", "created", "updated", "linked_duplicates"}  # says nothing of it
    entries, notes = await _flags(pool, request_id)
    assert [(e["child_uid"], e["details"]) for e in entries] == [(mover.uid, {"shares": ["address"]})]
    assert len(notes) == 1 and notes[0]["recipient_kind"] == "reviewers" and mover.uid in notes[0]["body"]
    for note in notes:
        for value in home.hidden():
            assert value not in f"{note['subject']} {note['body']}"
    assert (await store.view_child(pool, mover.uid) or {})["withheld"] is True

    # The same file again flags nothing more; a record elsewhere is never flagged.
    await store.import_children(pool, [moved, make_child()], actor="test-import")
    assert len((await _flags(pool, request_id))[0]) == 1


async def test_a_shielded_child_moving_in_with_others_is_flagged_too(pool: asyncpg.Pool) -> None:
    home = Household()
    resident = home.child("Ola", date(2014, 4, 4))
    newcomer = make_child(date_of_birth=date(2013, 3, 3))
    await store.import_children(pool, [resident, newcomer], actor="test-import")
    request_id = await shield(pool, [newcomer.uid])
    moved = newcomer.model_copy(update={"carers": [Carer(name=home.carer, phone=home.carer_phone)]})
    await store.import_children(pool, [moved], actor="test-import")
    entries, notes = await _flags(pool, request_id)
    assert [(e["child_uid"], e["details"]) for e in entries] == [(resident.uid, {"shares": ["carer"]})]
    assert len(notes) == 1
    assert (await store.view_child(pool, resident.uid) or {})["withheld"] is True


# --------------------------------------------------------------------------------------------- intake


async def test_related_records_are_those_sharing_an_address_or_a_carer(pool: asyncpg.Pool) -> None:
    home = Household()
    child = home.child("Iris", date(2016, 6, 6))
    co_resident = home.child("Jon", date(2014, 4, 4), carers=[])
    shares_carer = home.child("Kit", date(2012, 2, 2), address=None)
    stranger = make_child()
    already = home.child("Lee", date(2010, 1, 1))
    await store.import_children(pool, [child, co_resident, shares_carer, stranger, already], actor="test-import")
    await shield(pool, [already.uid])
    related = await related_records(pool, [child.uid])
    assert [(r.uid, r.shares) for r in related] == sorted(
        [(co_resident.uid, ["address"]), (shares_carer.uid, ["carer"])],
        key=lambda pair: {co_resident.uid: "jon", shares_carer.uid: "kit"}[pair[0]],
    )
    assert await related_records(pool, [stranger.uid]) == []
    assert await related_records(pool, [child.uid, co_resident.uid, shares_carer.uid]) == []


@pytest.fixture
async def service(dev_env, pool, settings, task_queue):
    async with running_worker(dev_env.client, pool, settings, task_queue):
        yield ShieldingService(
            dev_env.client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
        )


def _with(base: IntakeDraft, *decisions: RelatedDraft) -> IntakeDraft:
    return base.model_copy(update={"related_records": list(decisions)})


@pytest.mark.devserver
async def test_intake_asks_about_each_co_resident_then_records_the_decisions(service, pool) -> None:
    home = Household()
    child = home.child("Amara", date(2016, 6, 6))
    brother = home.child("Tobi", date(2014, 4, 4), gender=Gender.MALE)
    half_sister = home.child("Ife", date(2012, 2, 2), address=None)  # the same carer, another home
    await store.import_children(pool, [child, brother, half_sister], actor="test-import")
    base = draft([child.uid])
    reason = f"CANARY-NOT-ADDED {home.tag}: lives with her father, no contact with the mother"

    # No decision: refused in one sentence naming both by uid and name, never the address; nothing started.
    with pytest.raises(RelatedRecordsUndecided) as refused:
        await service.submit_request(base, actor="officer-a", request_id=None)
    message = str(refused.value)
    assert message.count(". ") == 0 and message.endswith(".")
    for record in (brother, half_sister):
        assert record.uid in message and f"{record.given_name} {record.family_name}" in message
    for value in home.hidden():
        assert value not in message
    assert child.uid not in message
    assert {r.uid for r in refused.value.records} == {brother.uid, half_sister.uid}
    assert (await store.view_child(pool, child.uid) or {})["shielded"] is False

    # "Not added" without a reason is no decision; one decision of two is not enough.
    for partial in (
        _with(
            base,
            RelatedDraft(uid=brother.uid, decision="added"),
            RelatedDraft(uid=half_sister.uid, decision="not-added"),
        ),
        _with(base, RelatedDraft(uid=brother.uid, decision="added")),
    ):
        with pytest.raises(RelatedRecordsUndecided) as again:
            await service.submit_request(partial, actor="officer-a")
        assert [r.uid for r in again.value.records] == [half_sister.uid]
    # A decision that is neither added nor not-added is a problem of the request.
    with pytest.raises(Refusal, match="must be added or not-added"):
        await service.submit_request(_with(base, RelatedDraft(uid=brother.uid, decision="maybe")), actor="officer-a")

    decided = _with(
        base,
        RelatedDraft(uid=brother.uid, decision="added"),
        RelatedDraft(uid=half_sister.uid, decision="not-added", reason=reason),
    )
    ack = await service.submit_request(decided, actor="officer-a")
    assert ack.stage == Stage.AWAITING_FORM
    assert {c.uid for c in ack.children} == {child.uid, brother.uid}
    criteria = await pool.fetchval("SELECT criteria FROM shielding_requests WHERE request_id = $1", ack.request_id)
    assert criteria == [*base.criteria, "sibling-family-member"]
    half = await store.view_child(pool, half_sister.uid)
    assert half is not None and half["shielded"] is False and half["withheld"] is True

    entries = [
        e
        for e in await store.audit_entries(pool, request_id=ack.request_id)
        if e["action"] == AuditAction.RELATED_RECORD_DECIDED.value
    ]
    assert {(e["child_uid"], e["details"]["decision"]) for e in entries} == {
        (brother.uid, "added"),
        (half_sister.uid, "not-added"),
    }
    not_added = next(e for e in entries if e["child_uid"] == half_sister.uid)
    assert not_added["reason"].endswith(reason) and not_added["actor"] == "officer-a"


@pytest.mark.devserver
async def test_intake_without_co_residents_asks_nothing(service, pool) -> None:
    only = make_child()
    await store.import_children(pool, [only], actor="test-import")
    ack = await service.submit_request(draft([only.uid]), actor="officer-a")
    assert ack.stage == Stage.AWAITING_FORM
    entries = await store.audit_entries(pool, request_id=ack.request_id)
    assert AuditAction.RELATED_RECORD_DECIDED.value not in {e["action"] for e in entries}


# ---------------------------------------------------------------------------------------------- the page

PAGE_TASK_QUEUE = f"siblings-pages-{uuid.uuid4().hex[:6]}"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def page_settings(settings: Settings, dev_env: WorkflowEnvironment) -> Settings:
    ensure_frontend_installed()
    return settings.model_copy(
        update={"temporal_address": dev_env.client.service_client.config.target_host, "task_queue": PAGE_TASK_QUEUE}
    )


@pytest.fixture(scope="module")
async def page_worker(dev_env: WorkflowEnvironment, pool: asyncpg.Pool, page_settings: Settings) -> AsyncIterator[None]:
    async with running_worker(dev_env.client, pool, page_settings, PAGE_TASK_QUEUE):
        yield


@pytest.fixture(scope="module")
def page_app(page_settings: Settings, page_worker: None) -> Iterator[RunningApp]:
    with RunningApp(page_settings) as running:
        yield running


def _hidden(html: str, field: str) -> str:
    match = re.search(rf'name="{re.escape(field)}" value="([^"]*)"', html)
    assert match, f"the page carries {field}"
    return match.group(1)


@pytest.mark.devserver
async def test_the_intake_page_lists_co_residents_and_takes_a_decision_on_each(
    page_app: RunningApp, pool: asyncpg.Pool
) -> None:
    home = Household()
    child = home.child("Ruth", date(2016, 6, 6))
    sister = home.child("Sara", date(2013, 3, 3))
    await store.import_children(pool, [child, sister], actor="test-import")
    officer = await add_staff(pool, f"ivy-{uuid.uuid4().hex[:6]}", PASSWORD, "intake")
    reason = f"CANARY-NOT-ADDED {home.tag}: lives with her grandmother"
    async with httpx.AsyncClient(base_url=page_app.url, timeout=60) as http:
        sign_in = await http.get("/sign-in")
        token = _hidden(sign_in.text, PRE_SESSION_FIELD)
        await http.post("/sign-in", data={"name": officer, "password": PASSWORD, PRE_SESSION_FIELD: token})
        form = await http.get("/requests/new")
        assert form.status_code == 200
        fields = {
            "csrf_token": _hidden(form.text, "csrf_token"),
            "request_id": _hidden(form.text, "request_id"),
            "children": child.uid,
            "criteria": "domestic-violence",
            "reason": "Father has made threats",
            "requestor_type": "public",
            "requestor_name": "Grace Okoro",
            "requestor_phone": "020 7946 0303",
            "action": "shield",
        }
        asked = await http.post("/requests/new", data=fields)
        assert asked.status_code == 200
        assert "Records that share an address or a carer" in asked.text
        assert "There is a problem" in asked.text and sister.uid in asked.text and "Sara " + home.family in asked.text
        for value in home.hidden():
            assert html.escape(value) not in asked.text and value not in asked.text
        assert (await store.view_child(pool, child.uid) or {})["shielded"] is False
        # "Do not add" with no reason: asked for the reason, at the field.
        no_reason = await http.post(
            "/requests/new", data={**fields, "related": sister.uid, f"related-{sister.uid}": "not-added"}
        )
        assert "Enter the reason for not adding this record to the request" in no_reason.text
        decided = await http.post(
            "/requests/new",
            data={
                **fields,
                "related": sister.uid,
                f"related-{sister.uid}": "not-added",
                f"related-{sister.uid}-reason": reason,
            },
        )
        assert decided.status_code == 200 and "Record shielded" in decided.text, decided.text[:2000]
        assert reason not in decided.text
    assert (await store.view_child(pool, child.uid) or {})["shielded"] is True
    sister_view = await store.view_child(pool, sister.uid)
    assert sister_view is not None and sister_view["shielded"] is False and sister_view["withheld"] is True
    entries = await pool.fetch(
        "SELECT actor, reason, details FROM audit_log WHERE action = 'related-record-decided' AND child_uid = $1",
        sister.uid,
    )
    assert [(e["actor"], e["details"]["decision"]) for e in entries] == [(officer, "not-added")]
    assert entries[0]["reason"].endswith(reason)
