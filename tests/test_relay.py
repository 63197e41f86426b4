"""The outbox relay (shielding.delivery, workflows.notifications): every queued message reaches each recipient
exactly once, through a real SMTP server (aiosmtpd) or a fake GOV.UK Notify (the one part outside the product),
survives outages and a relay stopped mid-batch, surfaces permanent failures to managers, and carries nothing of
a child.

Each test has a database of its own and a time-skipping Temporal server of its own (function-scoped `time_env`),
so notification ids, and the delivery workflows' ids `notification-<id>`, never meet another test's.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import expect
from structlog.testing import capture_logs
from temporalio.client import ScheduleOverlapPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from activities.notifications import delivery_workflow_id
from shielding import access, messages, store
from shielding.delivery import FailureCode, NotifySender, SmtpSender, notify_templates, sender_from_settings
from shielding.domain import AuditAction, Requestor, RequestorType, ReviewKind, Stage
from shielding.embedded_postgres import EmbeddedPostgres
from shielding.settings import ConfigurationError, Settings
from shielding.steps import AuditedStep, LiftShield, RequestorMessage, ShieldChildren
from shielding.store import accounts, outbox
from shielding.store.audit import MessageKind, RecipientKind
from starter.identity import digest
from tests.helpers.browser import browser_page, check_accessibility, launched_chromium, save_screenshot
from tests.helpers.devstack import DevStack, password_for
from tests.helpers.lifecycle import intake
from tests.helpers.mail import FakeNotify, SmtpSink
from tests.helpers.records import make_child
from tests.helpers.relay import FreshDatabase, dispatch, eventually, fresh_database, relay_worker, settled, staff
from tests.helpers.webapp import RunningApp, add_staff
from web import oidc_accounts
from web.assets import ensure_frontend_installed
from web.deps import SESSION_COOKIE
from web.oidc import SSO_ACTOR, VerifiedIdentity
from worker.main import workflow_runner
from worker.notification_schedules import digest_schedule_id, ensure_relay_schedules, relay_schedule_id
from workflows.notifications import DeliveryOutcome, NotificationDeliveryWorkflow, ReviewDigestWorkflow

TEMPLATES = {"generic": "tmpl-generic", "review-due": "tmpl-review-due", "review-digest": "tmpl-digest"}


@pytest.fixture
async def database(pg_server: EmbeddedPostgres) -> AsyncIterator[FreshDatabase]:
    async with fresh_database(pg_server) as fresh:
        yield fresh


@pytest.fixture
def db(database: FreshDatabase) -> asyncpg.Pool:
    return database.pool


def smtp(sink: SmtpSink) -> SmtpSender:
    return SmtpSender("127.0.0.1", sink.port, "shielding@council.example")


def notify_sender(fake: FakeNotify) -> NotifySender:
    return NotifySender(fake.api_key, fake.url, TEMPLATES)


async def queue(
    pool: asyncpg.Pool,
    kind: RecipientKind,
    *,
    recipient: str | None = None,
    request_id: str = "SR-AAAABBBBCCCC",
    template: MessageKind = MessageKind.GENERIC,
    subject: str = "Shielding request SR-AAAABBBBCCCC",
    body: str = "A message about shielding request SR-AAAABBBBCCCC.",
) -> int:
    async with pool.acquire() as conn, conn.transaction():
        return await store.notify(
            conn,
            recipient_kind=kind.value,
            recipient=recipient or kind.value,
            request_id=request_id,
            subject=subject,
            body=body,
            template=template,
        )


# ---------------------------------------------------------------------------------------------- SMTP


async def test_smtp_delivers_each_message_to_every_recipient_with_an_address(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "reviewer", "ravi@council.example")
    await staff(db, "reviewer", "rose@council.example")
    await staff(db, "reviewer", None)  # no address: sent nothing
    disabled = await staff(db, "reviewer", "gone@council.example")
    async with db.acquire() as conn:
        await accounts.disable_account(conn, disabled)
    await staff(db, "manager", "morgan@council.example")
    to_reviewers = await queue(db, RecipientKind.REVIEWERS, template=MessageKind.REVIEW_DUE, subject="Review due")
    to_managers = await queue(db, RecipientKind.MANAGERS, template=MessageKind.BREAK_GLASS, subject="Break-glass")
    to_requestor = await queue(db, RecipientKind.REQUESTOR, recipient="dana@family-services.example")
    with SmtpSink() as sink:
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            await dispatch(time_env.client, db, task_queue)
            done = await settled(db, [to_reviewers, to_managers, to_requestor])

        assert [m.status for m in done] == [outbox.MessageStatus.SENT] * 3
        assert sorted(rcpt for rcpt, _ in sink.messages) == [
            "dana@family-services.example",
            "morgan@council.example",
            "ravi@council.example",
            "rose@council.example",
        ]
        (ravi,) = sink.to("ravi@council.example")
        assert ravi["Subject"] == "Review due"
        assert ravi["From"] == "shielding@council.example"
        assert (
            ravi["Message-ID"] == f"<{to_reviewers}-1@shielding>"
            or ravi["Message-ID"] == f"<{to_reviewers}-2@shielding>"
        )
        assert ravi["X-Shielding-Template"] == "review-due"
        assert ravi.get_content().strip() == "A message about shielding request SR-AAAABBBBCCCC."
        assert sink.to("morgan@council.example")[0]["Subject"] == "Break-glass"
        # One delivery row per recipient, each with its own reference and time.
        rows = await db.fetch("SELECT * FROM notification_deliveries WHERE notification_id = $1", to_reviewers)
        assert sorted(r["reference"] for r in rows) == [f"{to_reviewers}-1", f"{to_reviewers}-2"]
        assert all(r["sent_at"] is not None and r["provider"] == "smtp" for r in rows)
        # A second dispatch (the next tick of the Schedule) starts nothing and sends nothing again.
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            await dispatch(time_env.client, db, task_queue)
            await asyncio.sleep(0.5)
        assert len(sink.messages) == 4


async def test_a_requestor_with_only_a_phone_is_not_possible_by_smtp_not_a_failure(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    sms = await queue(db, RecipientKind.REQUESTOR, recipient="020 7641 1899", template=MessageKind.LAPSE)
    with SmtpSink() as sink:
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            await dispatch(time_env.client, db, task_queue)
            (done,) = await settled(db, [sms])
    assert done.status == outbox.MessageStatus.NOT_POSSIBLE
    assert done.failure is None and done.failed_at is None
    assert [d.not_possible for d in done.deliveries] == [messages.SMS_NOT_POSSIBLE]
    assert sink.messages == []
    # Not possible is not a failure: nothing is audited as one.
    assert not await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'notification-failed'")


async def test_outage_keeps_messages_queued_then_delivers_them_when_smtp_is_back(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "reviewer", "ravi@council.example")
    sink = SmtpSink()  # not started: connection refused
    ids = [await queue(db, RecipientKind.REVIEWERS) for _ in range(3)]
    async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
        await dispatch(time_env.client, db, task_queue)

        async def retried() -> bool:
            described = await time_env.client.get_workflow_handle(delivery_workflow_id(ids[0])).describe()
            pending = described.raw_description.pending_activities
            return bool(pending) and pending[0].attempt >= 3

        await eventually(retried)
        assert {m.status for m in await outbox.outbox(db)} == {outbox.MessageStatus.QUEUED}
        sink.start()
        try:
            done = await settled(db, ids, timeout=60)
        finally:
            sink.stop()
    assert [m.status for m in done] == [outbox.MessageStatus.SENT] * 3
    assert len(sink.to("ravi@council.example")) == 3


async def test_three_days_without_the_provider_fail_the_message_with_a_reason(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "reviewer", "ravi@council.example")
    message = await queue(db, RecipientKind.REVIEWERS)
    sink = SmtpSink()  # never started: every attempt is refused a connection
    async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
        await dispatch(time_env.client, db, task_queue)
        await eventually(lambda: _attempted(time_env, message, 2))
        # Three days pass without the provider (the time-skipping server jumps them).
        await time_env.sleep(timedelta(days=3, minutes=30))
        (done,) = await settled(db, [message])
        handle = time_env.client.get_workflow_handle(delivery_workflow_id(message), result_type=DeliveryOutcome)
        outcome = await handle.result()
    assert outcome.failed == FailureCode.TIMED_OUT and outcome.sent == 0
    assert done.status == outbox.MessageStatus.FAILED and done.failure == messages.DELIVERY_TIMED_OUT
    assert (
        await db.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'notification-failed' AND reason = $1",
            messages.DELIVERY_TIMED_OUT,
        )
        == 1
    )


async def _attempted(env: WorkflowEnvironment, notification_id: int, attempts: int) -> bool:
    described = await env.client.get_workflow_handle(delivery_workflow_id(notification_id)).describe()
    pending = described.raw_description.pending_activities
    return bool(pending) and pending[0].attempt >= attempts


async def test_an_address_the_smtp_server_refuses_fails_the_message_with_a_reason_and_an_audit_entry(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "reviewer", "ravi@council.example")
    await staff(db, "reviewer", "nobody@council.example")
    refused = await queue(db, RecipientKind.REVIEWERS, request_id="SR-FAILFAILFAIL")
    nobody = await queue(db, RecipientKind.MANAGERS)  # no manager has an address
    with SmtpSink() as sink:
        sink.refuse.add("nobody@council.example")
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            await dispatch(time_env.client, db, task_queue)
            first, second = await settled(db, [refused, nobody])
    # The other reviewer still got it; the message is failed, in words that name no address.
    assert len(sink.to("ravi@council.example")) == 1
    assert first.status == outbox.MessageStatus.FAILED
    assert first.failure == messages.DELIVERY_REFUSED
    assert second.status == outbox.MessageStatus.FAILED and second.failure == messages.DELIVERY_NO_RECIPIENT
    for text in (first.failure, second.failure):
        assert "@" not in (text or "")
    entries = await db.fetch(
        "SELECT request_id, reason, details FROM audit_log WHERE action = 'notification-failed' ORDER BY entry_id"
    )
    assert sorted((e["request_id"], e["reason"]) for e in entries) == [
        ("SR-AAAABBBBCCCC", messages.DELIVERY_NO_RECIPIENT),
        ("SR-FAILFAILFAIL", messages.DELIVERY_REFUSED),
    ]
    assert sorted(e["details"]["notification_id"] for e in entries) == sorted([refused, nobody])
    assert "@" not in json.dumps([dict(e) for e in entries], default=str)


async def test_exactly_once_when_the_relay_is_stopped_mid_batch(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    reviewers = [f"reviewer{n}@council.example" for n in range(4)]
    for address in reviewers:
        await staff(db, "reviewer", address)
    ids = [await queue(db, RecipientKind.REVIEWERS) for _ in range(6)]
    with SmtpSink() as sink:
        sink.delay = 0.15  # each message takes a while, so the stop lands mid-batch
        first = relay_worker(
            time_env.client, db, settings, task_queue, smtp(sink), graceful_shutdown_timeout=timedelta(0)
        )
        async with first:
            await dispatch(time_env.client, db, task_queue)
            await eventually(lambda: _count_at_least(sink, 5))
        stopped_with = len(sink.messages)
        assert stopped_with < len(ids) * len(reviewers), "the batch finished before the stop"
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            await settled(db, ids, timeout=120)
    for address in reviewers:
        got = sorted(m["Message-ID"] for m in sink.to(address))
        assert len(got) == len(ids) == len(set(got)), (address, got)


async def _count_at_least(sink: SmtpSink, n: int) -> bool:
    return len(sink.messages) >= n


# -------------------------------------------------------------------------------------------- Notify


async def test_notify_gets_the_template_personalisation_and_reference(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "reviewer", "ravi@council.example")
    due = await queue(
        db, RecipientKind.REVIEWERS, template=MessageKind.REVIEW_DUE, subject="7-day review due", body="Due now."
    )
    text = await queue(db, RecipientKind.REQUESTOR, recipient="07700 900123", template=MessageKind.LAPSE)
    with FakeNotify() as fake:
        async with relay_worker(time_env.client, db, settings, task_queue, notify_sender(fake)):
            await dispatch(time_env.client, db, task_queue)
            done = await settled(db, [due, text])
    assert [m.status for m in done] == [outbox.MessageStatus.SENT] * 2
    (email,) = fake.to("ravi@council.example")
    assert email["kind"] == "email"
    assert email["template_id"] == "tmpl-review-due"
    assert email["personalisation"] == {
        "subject": "7-day review due",
        "body": "Due now.",
        "request_id": "SR-AAAABBBBCCCC",
    }
    assert email["reference"] == f"{due}-1"
    (sms,) = fake.to("07700 900123")
    assert sms["kind"] == "sms" and sms["template_id"] == "tmpl-generic"  # no "lapse" template: the generic one
    assert sms["reference"] == f"{text}-1"
    delivery = (await outbox.deliveries(db, due))["ravi@council.example"]
    assert delivery.provider == "notify" and delivery.provider_id == email["id"]


async def test_notify_lost_answer_is_found_by_reference_and_not_sent_twice(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "reviewer", "ravi@council.example")
    ids = [await queue(db, RecipientKind.REVIEWERS) for _ in range(2)]
    with FakeNotify() as fake:
        fake.lose_answers = 2  # Notify accepts both, but the relay never hears so (as after a crash)
        async with relay_worker(time_env.client, db, settings, task_queue, notify_sender(fake)):
            await dispatch(time_env.client, db, task_queue)
            done = await settled(db, ids)
    assert [m.status for m in done] == [outbox.MessageStatus.SENT] * 2
    assert sorted(n["reference"] for n in fake.to("ravi@council.example")) == sorted(f"{i}-1" for i in ids)
    assert sorted(fake.lookups) == sorted(f"{i}-1" for i in ids)


async def test_notify_outage_then_recovery_and_a_refused_number_fails(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "manager", "morgan@council.example")
    alert = await queue(db, RecipientKind.MANAGERS, template=MessageKind.BREAK_GLASS)
    bad = await queue(db, RecipientKind.PRACTITIONER, recipient="07700 900999")
    with FakeNotify() as fake:
        fake.down = True
        fake.refuse.add("07700 900999")
        async with relay_worker(time_env.client, db, settings, task_queue, notify_sender(fake)):
            await dispatch(time_env.client, db, task_queue)

            async def retried() -> bool:
                described = await time_env.client.get_workflow_handle(delivery_workflow_id(alert)).describe()
                pending = described.raw_description.pending_activities
                return bool(pending) and pending[0].attempt >= 3

            await eventually(retried)
            assert (await outbox.outbox(db, limit=10))[-1].status == outbox.MessageStatus.QUEUED
            fake.down = False
            sent, failed = await settled(db, [alert, bad])
    assert sent.status == outbox.MessageStatus.SENT and len(fake.to("morgan@council.example")) == 1
    assert failed.status == outbox.MessageStatus.FAILED and failed.failure == messages.DELIVERY_REFUSED
    assert fake.to("07700 900999") == []


def test_the_sender_is_notify_with_a_key_else_smtp_and_production_names_one() -> None:
    templates = json.dumps(TEMPLATES)
    chosen = sender_from_settings(Settings(notify_api_key=FakeNotify().api_key, notify_templates=templates))
    assert isinstance(chosen, NotifySender) and chosen.template_for("lapse") == "tmpl-generic"
    assert isinstance(sender_from_settings(Settings()), SmtpSender)
    with capture_logs() as logged:
        assert isinstance(sender_from_settings(Settings(environment="production")), SmtpSender)
    assert [e["event"] for e in logged if e["log_level"] == "warning"][0].startswith("no message provider")
    # docker-compose.yml passes the host empty when none is given: still no provider, and said so.
    with capture_logs() as logged:
        unset = sender_from_settings(Settings(environment="production", smtp_host=""))
    assert isinstance(unset, SmtpSender) and unset.host == "127.0.0.1"
    assert [e["event"] for e in logged if e["log_level"] == "warning"][0].startswith("no message provider")
    with capture_logs() as logged:
        relay = sender_from_settings(
            Settings(environment="production", smtp_host="smtp.council.example", smtp_starttls=True)
        )
    assert isinstance(relay, SmtpSender) and relay.host == "smtp.council.example" and relay.starttls
    assert not [e for e in logged if e["log_level"] == "warning"]


def test_notify_templates_need_a_generic_one() -> None:
    assert notify_templates(Settings(notify_templates=json.dumps(TEMPLATES))) == TEMPLATES
    for wrong in ('{"lapse": "t"}', "not json", '{"generic": 3}'):
        with pytest.raises(ConfigurationError):
            notify_templates(Settings(notify_templates=wrong))


async def test_delivery_workflow_history_carries_ids_only(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    address = f"canary-{uuid.uuid4().hex[:6]}@council.example"
    await staff(db, "reviewer", address)
    secret_subject, secret_body = f"SUBJ-{uuid.uuid4().hex}", f"BODY-{uuid.uuid4().hex}"
    message = await queue(db, RecipientKind.REVIEWERS, subject=secret_subject, body=secret_body)
    with SmtpSink() as sink:
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            await dispatch(time_env.client, db, task_queue)
            await settled(db, [message])
    history = await time_env.client.get_workflow_handle(delivery_workflow_id(message)).fetch_history()
    text = json.dumps(history.to_json_dict())
    # Payloads are encrypted by the codec; decode them as the Web UI would, and look for the message.
    decoded = []
    for event in history.events:
        for attr in ("workflow_execution_started_event_attributes", "activity_task_scheduled_event_attributes"):
            if event.HasField(attr):
                payloads = getattr(event, attr).input.payloads
                decoded += await time_env.client.data_converter.decode(list(payloads))
    plain = text + json.dumps(decoded, default=str)
    for canary in (address, secret_subject, secret_body):
        assert canary not in plain
    assert any(str(message) in json.dumps(d, default=str) for d in decoded)
    # And the workflow is deterministic: its history replays.
    replayer = Replayer(
        workflows=[NotificationDeliveryWorkflow],
        namespace=time_env.client.namespace,
        workflow_runner=workflow_runner(),
        data_converter=time_env.client.data_converter,
    )
    await replayer.replay_workflow(history)


# ------------------------------------------------------------------------------- the managers' view


async def _session(pool: asyncpg.Pool, name: str, kind: str) -> tuple[str, str]:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await accounts.create_session(
        pool,
        token_digest=digest(token),
        name=name,
        kind=kind,
        csrf_token=csrf,
        auth_method="password",
        authenticated_at=datetime.now(UTC),
    )
    return token, csrf


async def test_a_failed_message_is_shown_to_managers_only_on_the_page_and_the_api(
    database: FreshDatabase, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    db = database.pool
    manager = await add_staff(db, f"morgan-{uuid.uuid4().hex[:4]}", "correct-horse-battery-staple", "manager")
    async with db.acquire() as conn, conn.transaction():
        await outbox.set_staff_address(conn, manager, by="test-setup", email="morgan@council.example")
    reviewer = await staff(db, "reviewer", "ravi@council.example")
    await staff(db, "reviewer", "nobody@council.example")
    failing = await queue(db, RecipientKind.REVIEWERS, subject="Reminder: overdue review", body="Please decide.")
    sent = await queue(db, RecipientKind.MANAGERS, subject="Break-glass view", body="Please investigate.")
    waiting = await queue(db, RecipientKind.REQUESTOR, recipient="dana@family-services.example")
    with SmtpSink() as sink:
        sink.refuse.add("nobody@council.example")
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            await dispatch(time_env.client, db, task_queue)
            await settled(db, [failing, sent, waiting])
    # One more, never dispatched: shown as queued.
    queued = await queue(db, RecipientKind.REVIEWERS, subject="Not sent yet")

    web = settings.model_copy(
        update={"database_url": database.url, "temporal_address": time_env.client.service_client.config.target_host}
    )
    ensure_frontend_installed()
    manager_cookie, _ = await _session(db, manager, "cookie")
    reviewer_cookie, _ = await _session(db, reviewer, "cookie")
    manager_token, _ = await _session(db, manager, "bearer")
    reviewer_token, _ = await _session(db, reviewer, "bearer")
    with RunningApp(web) as app:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as http:
            listing = await http.get("/managers/messages", cookies={SESSION_COOKIE: manager_cookie})
            assert listing.status_code == 200, listing.text
            html = listing.text
            for text in ("Reminder: overdue review", "Please decide.", "Break-glass view", "Not sent yet"):
                assert text in html
            assert html.count("govuk-tag--red") == 1 and html.count("govuk-tag--grey") == 1
            assert messages.DELIVERY_REFUSED.replace("'", "&#39;") in html
            assert "r…@council.example" in html and "ravi@council.example" not in html
            only_failed = await http.get("/managers/messages?failed=yes", cookies={SESSION_COOKIE: manager_cookie})
            assert "Reminder: overdue review" in only_failed.text and "Break-glass view" not in only_failed.text
            # Not a manager: the access-denied page, and nothing of the outbox.
            refused = await http.get("/managers/messages", cookies={SESSION_COOKIE: reviewer_cookie})
            assert refused.status_code == 403 and "Reminder: overdue review" not in refused.text
            anonymous = await http.get("/managers/messages", follow_redirects=False)
            assert anonymous.status_code in (303, 401) and "Reminder" not in anonymous.text

            api = await http.get("/api/messages", headers={"Authorization": f"Bearer {manager_token}"})
            assert api.status_code == 200, api.text
            by_id = {m["notification_id"]: m for m in api.json()["messages"]}
            assert by_id[failing]["status"] == "failed" and by_id[failing]["failure"] == messages.DELIVERY_REFUSED
            assert by_id[sent]["status"] == "sent" and by_id[queued]["status"] == "queued"
            assert {d["recipient"] for d in by_id[failing]["deliveries"]} == {
                "r…@council.example",
                "n…@council.example",
            }
            assert all(d["sent_at"] for d in by_id[sent]["deliveries"])
            failed_only = await http.get(
                "/api/messages?failed=true", headers={"Authorization": f"Bearer {manager_token}"}
            )
            assert [m["notification_id"] for m in failed_only.json()["messages"]] == [failing]
            denied = await http.get("/api/messages", headers={"Authorization": f"Bearer {reviewer_token}"})
            assert denied.status_code == 403 and "messages" not in denied.json()
            assert (await http.get("/api/messages")).status_code == 401

        # In a browser: reached from Staff accounts, accessible, and the failure's reason beside its tag.
        async with launched_chromium() as chromium, browser_page(chromium, app.url) as (page, watch):
            await page.context.add_cookies([{"name": SESSION_COOKIE, "value": manager_cookie, "url": app.url}])
            await page.goto("/users")
            await page.get_by_role("link", name=re.compile("See the messages")).click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("Messages")
            row = page.locator(f"#message-{failing}")
            await expect(row.locator(".govuk-tag")).to_have_text("Failed")
            await expect(row).to_contain_text(messages.DELIVERY_REFUSED)
            await expect(page.locator(f"#message-{queued} .govuk-tag")).to_have_text("Queued")
            await check_accessibility(page)
            await save_screenshot(page, "messages")
            watch.assert_clean()


async def test_staff_addresses_are_set_by_managers_only_and_audited_without_the_value(
    database: FreshDatabase, settings: Settings, time_env: WorkflowEnvironment
) -> None:
    db = database.pool
    manager = await add_staff(db, f"morgan-{uuid.uuid4().hex[:4]}", "correct-horse-battery-staple", "manager")
    reviewer = await staff(db, "reviewer", None)
    manager_token, _ = await _session(db, manager, "bearer")
    reviewer_token, _ = await _session(db, reviewer, "bearer")
    web = settings.model_copy(
        update={"database_url": database.url, "temporal_address": time_env.client.service_client.config.target_host}
    )
    with RunningApp(web) as app:
        async with httpx.AsyncClient(base_url=app.url, timeout=30) as http:
            as_manager = {"Authorization": f"Bearer {manager_token}"}
            path = f"/api/users/{reviewer}/address"
            answer = await http.put(path, json={"email": "ravi@council.example"}, headers=as_manager)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"name": reviewer, "changed": {"email": "set"}}
            assert await outbox.staff_address(db, reviewer) == ("ravi@council.example", None)
            # The reviewer cannot change their own (or anyone's) address.
            own = await http.put(
                path, json={"email": "x@elsewhere.example"}, headers={"Authorization": f"Bearer {reviewer_token}"}
            )
            assert own.status_code == 403
            assert await outbox.staff_address(db, reviewer) == ("ravi@council.example", None)
            bad = await http.put(path, json={"email": "not an address"}, headers=as_manager)
            assert bad.status_code == 422
            cleared = await http.put(path, json={"email": None, "phone": "020 7641 0000"}, headers=as_manager)
            assert cleared.json()["changed"] == {"email": "cleared", "phone": "set"}
            missing = await http.put(
                "/api/users/no-such-person/address", json={"email": "a@b.example"}, headers=as_manager
            )
            assert missing.status_code in (400, 404, 409, 422)
    entries = await db.fetch(
        "SELECT actor, details FROM audit_log WHERE action = 'staff-address-changed' ORDER BY entry_id"
    )
    assert [(e["actor"], e["details"]) for e in entries] == [
        (manager, {"name": reviewer, "email": "set"}),
        (manager, {"name": reviewer, "email": "cleared", "phone": "set"}),
    ]
    assert "ravi@council.example" not in json.dumps([dict(e) for e in entries], default=str)


# ------------------------------------------------------------------------------------------ canaries


@pytest.mark.parametrize("provider", ["smtp", "notify"])
async def test_no_message_of_any_kind_carries_a_shielded_childs_details(
    provider: str,
    db: asyncpg.Pool,
    settings: Settings,
    task_queue: str,
    time_env: WorkflowEnvironment,
    caplog: pytest.LogCaptureFixture,
) -> None:
    canary = f"CANARY{uuid.uuid4().hex[:8].upper()}"
    child = make_child(
        postcode="NW8 1CA",
        school=f"{canary} School",
        address_line=f"7 {canary} Road",
        carer_name=f"{canary} Carer",
    )
    await store.import_children(db, [child], actor="importer")
    await staff(db, "reviewer", "ravi@council.example")
    await staff(db, "manager", "morgan@council.example")
    officer = await staff(db, "child-protection", "cp@council.example")
    requestor = (
        Requestor(type=RequestorType.PUBLIC, name=f"{canary} Caller", email="caller@family.example")
        if provider == "smtp"
        else Requestor(type=RequestorType.PUBLIC, name=f"{canary} Caller", phone="07700 900123")
    )
    called_at = datetime.now(UTC) - timedelta(days=8)
    request = intake([child.uid], called_at, reason=f"{canary} reason for shielding", requestor=requestor)
    rid = request.request_id
    await store.shield_request(db, ShieldChildren(request=request, form_due_at=called_at + timedelta(days=9)), "k1")

    # Every kind of message the service queues, each through the store function its workflow or page calls.
    await store.send_requestor_message(
        db,
        RequestorMessage(
            request_id=rid, subject=messages.form_receipt_subject(rid), body=messages.form_receipt_body(rid)
        ),
        "k2",
    )
    due_at = called_at + timedelta(days=7)
    kind = ReviewKind.SEVEN_DAY
    await store.record_step(
        db,
        AuditedStep(
            request_id=rid,
            action=AuditAction.REVIEW_DUE,
            actor="system",
            reason=messages.review_due_audit(kind),
            stage=Stage.REVIEW_DUE,
            details={"review": kind.value, "due_at": due_at.isoformat()},
            reviewer_subject=messages.review_due_subject(kind, rid),
            reviewer_body=messages.review_due_body(kind, rid, due_at),
        ),
        "k3",
    )
    await store.record_step(
        db,
        AuditedStep(
            request_id=rid,
            action=AuditAction.REMINDER,
            actor="system",
            reason=messages.reminder_audit(kind),
            details={"review": kind.value, "reminder": 1},
            reviewer_subject=messages.reminder_subject(kind, rid),
            reviewer_body=messages.reminder_body(kind, rid),
        ),
        "k4",
    )
    # An import of the same child under another uid (a duplicate), and of a child at the shielded address.
    twin = child.model_copy(update={"uid": f"C-{uuid.uuid4().hex[:12]}"})
    neighbour = make_child(postcode="NW8 1CA", address_line=f"7 {canary} Road", given_name="Noah")
    await store.import_children(db, [twin, neighbour], actor="importer")
    await access.override_view(db, officer, child.uid, f"{canary} why I looked")
    with SmtpSink() as smtp_sink, FakeNotify() as fake:
        sender = smtp(smtp_sink) if provider == "smtp" else notify_sender(fake)
        with capture_logs() as relay_logs:
            async with relay_worker(time_env.client, db, settings, task_queue, sender):
                digest_result = await time_env.client.execute_workflow(
                    ReviewDigestWorkflow.run, id=f"digest-{uuid.uuid4().hex[:6]}", task_queue=task_queue
                )
                assert digest_result.due + digest_result.overdue == 1
                # The lapse last: it unshields.
                await store.lift_shield(
                    db,
                    LiftShield(
                        request_id=rid,
                        action=AuditAction.LAPSED,
                        stage=Stage.LAPSED,
                        actor="system",
                        reason=messages.lapse_reason(called_at + timedelta(days=9)),
                        notify_requestor=messages.lapse_notice_to_requestor(rid),
                    ),
                    "k5",
                )
                await dispatch(time_env.client, db, task_queue)
                ids = [int(r["notification_id"]) for r in await db.fetch("SELECT notification_id FROM notifications")]
                done = await settled(db, ids)
        delivered_text = json.dumps(
            [[rcpt, dict(m.items()), m.get_content()] for rcpt, m in smtp_sink.messages] + fake.sent, default=str
        )
    assert {m.status for m in done} == {outbox.MessageStatus.SENT}
    assert {m.template for m in done} == {k.value for k in MessageKind} - {"generic"}
    sent_count = len(smtp_sink.messages) if provider == "smtp" else len(fake.sent)
    assert sent_count >= len(done)
    assert rid in delivered_text
    for secret in (canary, "Frampton", "NW8 1CA", child.family_name):
        assert secret not in delivered_text, secret
    # Nor does anything the relay logged (its own events, and the SDK's lines about failed attempts).
    logged = json.dumps(relay_logs, default=str) + caplog.text
    assert relay_logs and "notification delivered" in logged
    for secret in (canary, "@council.example", "caller@family.example", "07700 900123", "NW8 1CA"):
        assert secret not in logged, secret
    rows = json.dumps([dict(r) for r in await db.fetch("SELECT * FROM notifications")], default=str)
    assert canary not in rows


# ------------------------------------------------------------------------------------------ schedules


@pytest.mark.devserver
async def test_the_schedules_are_made_once_and_the_relay_schedule_delivers(
    db: asyncpg.Pool, settings: Settings, dev_env: WorkflowEnvironment
) -> None:
    client = dev_env.client
    tq = f"tq-{uuid.uuid4().hex[:8]}"
    relay_settings = settings.model_copy(update={"task_queue": tq, "notification_relay_seconds": 1.0})
    relay_id, digest_id = await ensure_relay_schedules(client, relay_settings, trigger=False)
    try:
        assert (relay_id, digest_id) == (relay_schedule_id(tq), digest_schedule_id(tq))
        # A second worker start updates them in place.
        assert await ensure_relay_schedules(client, relay_settings, trigger=False) == (relay_id, digest_id)
        relay = await client.get_schedule_handle(relay_id).describe()
        assert [i.every for i in relay.schedule.spec.intervals] == [timedelta(seconds=1)]
        assert relay.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
        digest = await client.get_schedule_handle(digest_id).describe()
        assert digest.schedule.spec.time_zone_name == "Europe/London"
        (calendar,) = digest.schedule.spec.calendars
        assert [r.start for r in calendar.hour] == [8] and [r.start for r in calendar.minute] == [0]

        await staff(db, "reviewer", "ravi@council.example")
        message = await queue(db, RecipientKind.REVIEWERS)
        with SmtpSink() as sink:
            async with relay_worker(client, db, relay_settings, tq, smtp(sink)):
                (done,) = await settled(db, [message], timeout=60)
        assert done.status == outbox.MessageStatus.SENT and len(sink.to("ravi@council.example")) == 1
    finally:
        for schedule_id in (relay_id, digest_id):
            await client.get_schedule_handle(schedule_id).delete()


# ------------------------------------------------------------------------------------------ shielding dev


@pytest.mark.slow
async def test_shielding_dev_delivers_to_its_local_mail_sink_and_the_cli_lists_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIELDING_NOTIFICATION_RELAY_SECONDS", "1")
    stack = DevStack(tmp_path / "data")
    try:
        await asyncio.to_thread(stack.start)
        assert "mail: every message the service sends is kept in" in stack.stdout()
        boot = stack.run("users", "bootstrap", "morgan", "--password-stdin", input=password_for("morgan") + "\n")
        assert boot.returncode == 0, boot
        added = stack.run(
            "users",
            "add",
            "ravi",
            "--role",
            "reviewer",
            "--password-stdin",
            "--email",
            "ravi@council.example",
            as_user="morgan",
            input=password_for("ravi") + "\n",
        )
        assert added.returncode == 0 and "email set for messages" in added.stdout, added
        pool = await store.create_pool(stack.database_url, max_size=2)
        try:
            message = await queue(pool, RecipientKind.REVIEWERS, subject="Delivered in development")
            to_managers = await queue(pool, RecipientKind.MANAGERS, subject="Nobody to tell")  # morgan has no email
            done, failed = await settled(pool, [message, to_managers], timeout=60)
        finally:
            await pool.close()
        assert done.status == outbox.MessageStatus.SENT, (done, stack.describe())
        assert failed.status == outbox.MessageStatus.FAILED
        kept = [p.read_text() for p in (tmp_path / "data" / "mail" / "new").iterdir()]
        assert len(kept) == 1 and "Subject: Delivered in development" in kept[0]
        assert "To: ravi@council.example" in kept[0]

        listed = stack.run("messages", "list", "--json", as_user="morgan")
        assert listed.returncode == 0, listed
        statuses = {m["notification_id"]: m["status"] for m in listed.json()["messages"]}
        assert statuses == {message: "sent", to_managers: "failed"}
        only_failed = stack.run("messages", "list", "--failed", as_user="morgan")
        assert messages.DELIVERY_NO_RECIPIENT in only_failed.stdout and "Delivered" not in only_failed.stdout
        assert "ravi@council.example" not in listed.stdout + only_failed.stdout
        refused = stack.run("messages", "list", as_user="ravi")
        assert refused.returncode == 1 and "Delivered" not in refused.stdout
        cleared = stack.run("users", "address", "ravi", "--clear-email", as_user="morgan")
        assert cleared.returncode == 0 and "email cleared" in cleared.stdout, cleared
        not_a_manager = stack.run("users", "address", "morgan", "--email", "m@x.example", as_user="ravi")
        assert not_a_manager.returncode == 1
        code, _ = await asyncio.to_thread(stack.stop)
        assert code == 0
    finally:
        stack.ensure_stopped()


# ------------------------------------------------------------------------------ grants and the digest


async def test_the_service_may_record_deliveries_but_never_remove_them_and_practitioners_see_none(
    database: FreshDatabase,
) -> None:
    db = database.pool
    message = await queue(db, RecipientKind.REVIEWERS)
    conn = await asyncpg.connect(database.url)
    try:
        await conn.execute("SET ROLE shielding_service")
        await conn.execute(
            "INSERT INTO notification_deliveries (notification_id, recipient, channel, provider, reference) "
            "VALUES ($1, 'a@b.example', 'email', 'smtp', $2)",
            message,
            f"{message}-1",
        )
        await conn.execute("UPDATE notification_deliveries SET sent_at = now() WHERE notification_id = $1", message)
        await conn.execute("UPDATE accounts SET email = NULL WHERE false")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("DELETE FROM notification_deliveries")
        with pytest.raises(asyncpg.CheckViolationError):  # a recipient kind the outbox does not know
            await conn.execute(
                "INSERT INTO notifications (recipient_kind, recipient, subject, body) "
                "VALUES ('everyone', 'x', 's', 'b')"
            )
        await conn.execute("RESET ROLE")
        await conn.execute("SET ROLE shielding_practitioner")
        for table in ("notification_deliveries", "notifications", "accounts"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
    finally:
        await conn.close()


async def test_the_digest_names_due_and_overdue_requests_once_a_day_and_nothing_when_none_is_due(
    db: asyncpg.Pool, settings: Settings, task_queue: str, time_env: WorkflowEnvironment
) -> None:
    await staff(db, "reviewer", "ravi@council.example")
    with SmtpSink() as sink:
        async with relay_worker(time_env.client, db, settings, task_queue, smtp(sink)):
            nothing = await time_env.client.execute_workflow(
                ReviewDigestWorkflow.run, id=f"digest-{uuid.uuid4().hex[:6]}", task_queue=task_queue
            )
            assert (nothing.due, nothing.overdue, nothing.notification_id) == (0, 0, None)
            assert not await db.fetchval("SELECT count(*) FROM notifications")
            await db.execute("DELETE FROM completed_operations WHERE operation_key LIKE 'review-digest-%'")

            rids = []
            for overdue in (False, True):
                child = make_child()
                await store.import_children(db, [child], actor="importer")
                called_at = datetime.now(UTC) - timedelta(days=10)
                request = intake([child.uid], called_at)
                await store.shield_request(
                    db, ShieldChildren(request=request, form_due_at=called_at + timedelta(days=9)), f"s-{child.uid}"
                )
                due_at = datetime.now(UTC) - (timedelta(days=3) if overdue else timedelta(hours=2))
                await store.record_step(
                    db,
                    AuditedStep(
                        request_id=request.request_id,
                        action=AuditAction.REVIEW_DUE,
                        actor="system",
                        reason="7-day review due",
                        stage=Stage.REVIEW_DUE,
                        details={"review": "7-day", "due_at": due_at.isoformat()},
                    ),
                    f"d-{child.uid}",
                )
                rids.append(request.request_id)
            first = await time_env.client.execute_workflow(
                ReviewDigestWorkflow.run, id=f"digest-{uuid.uuid4().hex[:6]}", task_queue=task_queue
            )
            again = await time_env.client.execute_workflow(
                ReviewDigestWorkflow.run, id=f"digest-{uuid.uuid4().hex[:6]}", task_queue=task_queue
            )
            assert (first.due, first.overdue) == (1, 1) and again == first  # once a London day
            await dispatch(time_env.client, db, task_queue)
            assert first.notification_id is not None
            (sent,) = await settled(db, [first.notification_id])
    assert sent.template == "review-digest" and sent.recipient_kind == "reviewers"
    assert sent.subject == messages.review_digest_subject(1, 1)
    assert sent.body == messages.review_digest_body([rids[0]], [rids[1]])
    (email,) = sink.to("ravi@council.example")
    assert rids[0] in email.get_content() and rids[1] in email.get_content()


async def test_single_sign_on_fills_an_empty_email_from_the_claim_and_never_overrides_a_managers(
    db: asyncpg.Pool,
) -> None:
    subject = f"sub-{uuid.uuid4().hex[:8]}"
    async with db.acquire() as conn, conn.transaction():
        await accounts.save_account(conn, "ivy", created_by="test-setup", password_hash=None, oidc_subject=subject)

    def who(email: str | None) -> VerifiedIdentity:
        return VerifiedIdentity(
            subject=subject, auth_time=datetime.now(UTC), groups=None, preferred_username="ivy", email=email
        )

    await oidc_accounts.fill_email(db, who("not an address"))
    assert await outbox.staff_address(db, "ivy") == (None, None)
    await oidc_accounts.fill_email(db, who("ivy@council.example"))
    assert await outbox.staff_address(db, "ivy") == ("ivy@council.example", None)
    async with db.acquire() as conn, conn.transaction():
        await outbox.set_staff_address(conn, "ivy", by="morgan", email="ivy.morgan@council.example")
    await oidc_accounts.fill_email(db, who("ivy@elsewhere.example"))
    assert await outbox.staff_address(db, "ivy") == ("ivy.morgan@council.example", None)
    entries = await db.fetch("SELECT actor, details FROM audit_log WHERE action = 'staff-address-changed'")
    assert [(e["actor"], e["details"]) for e in entries] == [
        (SSO_ACTOR, {"name": "ivy", "email": "set"}),
        ("morgan", {"name": "ivy", "email": "set"}),
    ]
