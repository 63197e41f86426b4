"""time_to_shield and intake_throughput: our intake against the engine floor, interleaved in batches.

"ours" is `ShieldingService.submit_request` with a valid draft naming one fresh (never shielded) child;
"floor" is `bench.floor.floor_intake` on the same server and worker process setup; "untuned" is the same
floor on a dev server started with default settings. Each kind runs in closed-loop batches of N requests with
C in flight, and the kinds alternate batch by batch (order reversed every round), so a noisy neighbour hurts
both sides alike.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from bench.floor import floor_intake
from bench.stats import median, rate, ratio, summarize
from shielding.domain import Stage
from starter import IntakeDraft, ShieldingService, new_request_id

KIND_OURS = "ours"
KIND_FLOOR = "floor"
KIND_UNTUNED = "untuned"
KIND_FLOOR_LOCAL = "floor_local"


def draft(uid: str) -> IntakeDraft:
    return IntakeDraft(
        children=[uid],
        criteria=["refuge"],
        reason="Mother and children placed in a refuge after threats.",
        requestor_type="professional",
        requestor_name="Sam Achebe",
        requestor_organisation="Westminster Family Services",
        requestor_phone="020 7641 1899",
    )


@dataclass
class Sample:
    kind: str
    workflow_id: str
    latency_ms: float
    started_at: float  # time.time() when the call was made
    finished_at: float


@dataclass
class Rig:
    """What the intake phases need: our service, the floor's clients and a supply of fresh children."""

    service: ShieldingService
    client: Client
    floor_task_queue: str
    children: Iterator[str]
    untuned_client: Client | None = None
    untuned_task_queue: str | None = None
    samples: list[Sample] = field(default_factory=list)

    def call(self, kind: str) -> Callable[[], Awaitable[Sample]]:
        if kind == KIND_OURS:
            return self._ours
        if kind == KIND_FLOOR:
            return lambda: self._floor(self.client, self.floor_task_queue, KIND_FLOOR)
        if kind == KIND_FLOOR_LOCAL:
            return lambda: self._floor(self.client, self.floor_task_queue, KIND_FLOOR_LOCAL, local=True)
        assert self.untuned_client is not None and self.untuned_task_queue is not None
        return lambda: self._floor(self.untuned_client, self.untuned_task_queue, KIND_UNTUNED)  # type: ignore[arg-type]

    async def _ours(self) -> Sample:
        uid = next(self.children)
        request_id = new_request_id()
        request = draft(uid)
        wall = time.time()
        t0 = time.perf_counter()
        ack = await self.service.submit_request(request, actor="bench-intake", request_id=request_id)
        elapsed = time.perf_counter() - t0
        if ack.stage != Stage.AWAITING_FORM:
            raise RuntimeError(f"intake of {uid} ended {ack.stage.value}: {ack.message}")
        return Sample(KIND_OURS, request_id, elapsed * 1000, wall, wall + elapsed)

    async def _floor(self, client: Client, task_queue: str, kind: str, *, local: bool = False) -> Sample:
        workflow_id = f"bench-{kind}-{uuid.uuid4().hex[:16]}".replace("_", "-")
        wall = time.time()
        t0 = time.perf_counter()
        await floor_intake(client, workflow_id, task_queue, local=local)
        elapsed = time.perf_counter() - t0
        return Sample(kind, workflow_id, elapsed * 1000, wall, wall + elapsed)


async def run_batch(call: Callable[[], Awaitable[Sample]], count: int, concurrency: int) -> tuple[list[Sample], float]:
    """`count` calls with `concurrency` in flight (closed loop); returns the samples and the wall time."""
    remaining = count
    samples: list[Sample] = []

    async def lane() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            samples.append(await call())

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as group:  # one failure cancels the rest
        for _ in range(min(concurrency, count)):
            group.create_task(lane())
    return samples, time.perf_counter() - t0


async def warm_up(rig: Rig, kinds: list[str], progress: Callable[[str], None]) -> None:
    """First workflow tasks import the workflow modules into the sandbox, and the first calls open channels."""
    for kind in kinds:
        await run_batch(rig.call(kind), 10, 1)
    for kind in kinds:
        if kind in (KIND_OURS, KIND_FLOOR):
            await run_batch(rig.call(kind), 50, 25)
    progress("warm-up done")


async def time_to_shield(
    rig: Rig,
    plan: list[tuple[int, int, int]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """`plan`: (concurrency, requests per kind, batch size). The untuned floor runs at concurrency 1 only."""
    kinds = [KIND_OURS, KIND_FLOOR, KIND_FLOOR_LOCAL] + ([KIND_UNTUNED] if rig.untuned_client else [])
    await warm_up(rig, kinds, progress)
    by_concurrency: dict[str, Any] = {}
    for concurrency, per_kind, batch in plan:
        # The local-activity floor and the untuned floor are measured sequentially only.
        extra = [KIND_FLOOR_LOCAL] + ([KIND_UNTUNED] if rig.untuned_client else [])
        active = [KIND_OURS, KIND_FLOOR] + (extra if concurrency == 1 else [])
        collected: dict[str, list[Sample]] = {kind: [] for kind in active}
        seconds: dict[str, float] = dict.fromkeys(active, 0.0)
        rounds = -(-per_kind // batch)
        for round_no in range(rounds):
            order = active if round_no % 2 == 0 else active[::-1]
            for kind in order:
                # The untuned floor is ~5x slower per call: half the batch keeps the phase short.
                size = max(1, batch // 2) if kind == KIND_UNTUNED else batch
                samples, wall = await run_batch(rig.call(kind), size, concurrency)
                collected[kind] += samples
                seconds[kind] += wall
        if concurrency == 1:  # what the breakdown reads: sequential intakes, no queueing
            rig.samples = [s for kind in active for s in collected[kind]]
        entry: dict[str, Any] = {}
        for kind in active:
            entry[kind] = summarize([s.latency_ms for s in collected[kind]])
            entry[kind]["per_s"] = rate(len(collected[kind]), seconds[kind])
        entry["ratio_p50"] = ratio(entry[KIND_OURS].get("p50_ms"), entry[KIND_FLOOR].get("p50_ms"))
        entry["ratio_p99"] = ratio(entry[KIND_OURS].get("p99_ms"), entry[KIND_FLOOR].get("p99_ms"))
        by_concurrency[str(concurrency)] = entry
        progress(
            f"time_to_shield c={concurrency}: ours p50 {entry[KIND_OURS]['p50_ms']:.1f} / p99 "
            f"{entry[KIND_OURS]['p99_ms']:.1f} ms, floor p50 {entry[KIND_FLOOR]['p50_ms']:.1f} / p99 "
            f"{entry[KIND_FLOOR]['p99_ms']:.1f} ms"
        )
    headline = by_concurrency["1"]
    ours, floor = headline[KIND_OURS], headline[KIND_FLOOR]
    untuned = headline.get(KIND_UNTUNED, {})
    local = headline.get(KIND_FLOOR_LOCAL, {})
    return {
        "headline_concurrency": 1,
        "p50_ms": ours["p50_ms"],
        "p95_ms": ours["p95_ms"],
        "p99_ms": ours["p99_ms"],
        # The honest floor, and the main ratio: update-with-start whose update runs one no-op *local* activity
        # (the shape a shield could have at best: one workflow-task hop fewer than a regular activity).
        "floor_local_p50_ms": local.get("p50_ms"),
        "floor_local_p99_ms": local.get("p99_ms"),
        "ratio_p99_local_floor": ratio(ours["p99_ms"], local.get("p99_ms")),
        "ratio_p50_local_floor": ratio(ours["p50_ms"], local.get("p50_ms")),
        # Beside it: the regular-activity floor (the shape ours has) and the untuned server.
        "floor_p50_ms": floor["p50_ms"],
        "floor_p99_ms": floor["p99_ms"],
        "ratio_p99": headline["ratio_p99"],
        "untuned_floor_p50_ms": untuned.get("p50_ms"),
        "ratio_p50_untuned": ratio(ours["p50_ms"], untuned.get("p50_ms")),
        "by_concurrency": by_concurrency,
    }


async def intake_throughput(
    rig: Rig,
    total: int,
    concurrency: int,
    batches: int,
    progress: Callable[[str], None],
    cpu_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """`total` acknowledged requests per kind, `concurrency` in flight, in `batches` alternating batches.

    With `cpu_pids` ({"worker": pid, ...}), also the CPU time each process (tree) spent per request."""
    from bench.stack import tree_cpu_s

    kinds = [KIND_OURS, KIND_FLOOR]
    pids = dict(cpu_pids or {})
    pids["client"] = os.getpid()  # this process only: the servers and workers are its children

    def cpu_s(name: str, pid: int) -> float:
        return tree_cpu_s(pid, descendants=name != "client")

    done = dict.fromkeys(kinds, 0)
    seconds = dict.fromkeys(kinds, 0.0)
    cpu: dict[str, dict[str, float]] = {kind: dict.fromkeys(pids, 0.0) for kind in kinds}
    latencies: dict[str, list[float]] = {kind: [] for kind in kinds}
    per_batch = -(-total // batches)
    for round_no in range(batches):
        for kind in kinds if round_no % 2 == 0 else kinds[::-1]:
            size = min(per_batch, total - done[kind])
            if size <= 0:
                continue
            before = {name: cpu_s(name, pid) for name, pid in pids.items()}
            samples, wall = await run_batch(rig.call(kind), size, concurrency)
            for name, pid in pids.items():
                cpu[kind][name] += cpu_s(name, pid) - before[name]
            done[kind] += len(samples)
            seconds[kind] += wall
            latencies[kind] += [s.latency_ms for s in samples]
    ours = rate(done[KIND_OURS], seconds[KIND_OURS])
    floor = rate(done[KIND_FLOOR], seconds[KIND_FLOOR])
    progress(f"intake_throughput: ours {ours}/s, floor {floor}/s")
    return {
        "per_s": ours,
        "floor_per_s": floor,
        "ratio": ratio(ours, floor),
        "requests": done[KIND_OURS],
        "floor_requests": done[KIND_FLOOR],
        "concurrency": concurrency,
        "batches_per_kind": batches,
        "latency": {kind: summarize(latencies[kind]) for kind in kinds},
        "cpu_ms_per_request": {
            kind: {name: round(value * 1000 / max(done[kind], 1), 2) for name, value in cpu[kind].items()}
            for kind in kinds
        },
    }


# ------------------------------------------------------------------------------------------- breakdown

SEGMENTS = (
    ("client_to_start", "client call -> workflow started (RPC, server persists start + update)"),
    ("wft1_queue", "1st workflow task: scheduled -> picked up by the worker"),
    ("wft1_worker", "1st workflow task on the worker (sandbox, decode, run; a local activity runs in here)"),
    ("activity_queue", "activity task: scheduled -> picked up"),
    ("activity_run", "activity: picked up -> completion recorded (our DB transaction is in here)"),
    ("wft2_queue", "2nd workflow task: scheduled (activity done) -> picked up"),
    ("wft2_worker", "2nd workflow task on the worker (acknowledgement, search attributes, timer)"),
    ("completion_to_client", "update completed -> client has the result"),
)


def _event_seconds(event: Any) -> float:
    return float(event.event_time.seconds + event.event_time.nanos / 1e9)


def _segments(sample: Sample, events: list[Any]) -> dict[str, float]:
    """Per-hop times of one intake. The shield step may be a regular activity (two workflow tasks) or a
    local activity (run inside the first workflow task); hops that the shape does not have are left out."""
    from temporalio.api.enums.v1 import EventType

    def times(kind: int) -> list[float]:
        return [_event_seconds(e) for e in events if e.event_type == kind]

    started = times(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED)
    wft_started = times(EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
    wft_completed = times(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED)
    act_started = times(EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)
    act_completed = times(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
    update_done = times(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    if not (started and wft_started and wft_completed and update_done):
        return {}
    out = {
        "client_to_start": started[0] - sample.started_at,
        "wft1_queue": wft_started[0] - started[0],
        "wft1_worker": wft_completed[0] - wft_started[0],
    }
    if act_started and act_completed and len(wft_started) >= 2 and len(wft_completed) >= 2:
        out["activity_queue"] = act_started[0] - wft_completed[0]
        out["activity_run"] = act_completed[0] - act_started[0]
        out["wft2_queue"] = wft_started[1] - act_completed[0]
        out["wft2_worker"] = wft_completed[1] - wft_started[1]
    # From the completion of the workflow task that carried the update's result.
    carried = [t for t in wft_completed if t <= update_done[0] + 1e-6]
    out["completion_to_client"] = sample.finished_at - (carried[-1] if carried else update_done[0])
    return {key: value * 1000 for key, value in out.items()}


def shape(events: list[Any]) -> str:
    from temporalio.api.enums.v1 import EventType

    kinds = {e.event_type for e in events}
    if EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED in kinds:
        return "activity"
    if EventType.EVENT_TYPE_MARKER_RECORDED in kinds:
        return "local activity"
    return "no activity"


def hop_medians(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = [key for key, _ in SEGMENTS if any(key in r for r in rows)] + ["total"]
    return {key: round(median([r[key] for r in rows if key in r]), 2) for key in keys}


async def breakdown(client: Client, samples: list[Sample], per_kind: int) -> dict[str, Any]:
    """Where the time of a sequential intake goes, from the server's own history event times (same clock)."""
    out: dict[str, Any] = {"segments": dict(SEGMENTS)}
    for kind in sorted({s.kind for s in samples} - {KIND_UNTUNED}):
        chosen = [s for s in samples if s.kind == kind][-per_kind:]
        rows: list[dict[str, float]] = []
        shapes: set[str] = set()
        for sample in chosen:
            history = await client.get_workflow_handle(sample.workflow_id).fetch_history()
            events = list(history.events)
            segments = _segments(sample, events)
            if segments:
                segments["total"] = sample.latency_ms
                rows.append(segments)
                shapes.add(shape(events))
        if rows:
            out[kind] = hop_medians(rows)
            out[kind]["n"] = len(rows)
            out[kind]["shape"] = ", ".join(sorted(shapes))
    return out


async def shield_transaction_ms(pool: Any, uids: list[str]) -> dict[str, float]:
    """The activity's body alone (store.shield_request), called from here against the same database."""
    from shielding import deadlines, store
    from shielding.domain import Criterion, Requestor, RequestorType, ShieldingRequestInput
    from shielding.steps import ShieldChildren

    latencies = []
    for uid in uids:
        now = datetime.now(UTC)
        request = ShieldingRequestInput(
            request_id=new_request_id(),
            children=[uid],
            criteria=[Criterion.REFUGE],
            reason="Mother and children placed in a refuge after threats.",
            requestor=Requestor(type=RequestorType.PROFESSIONAL, name="Sam Achebe", phone="020 7641 1899"),
            called_at=now,
            actor="bench-intake",
        )
        t0 = time.perf_counter()
        shield = ShieldChildren(request=request, form_due_at=deadlines.form_due_at(now))
        await store.shield_request(pool, shield, f"{request.request_id}:1:shield")
        latencies.append((time.perf_counter() - t0) * 1000)
    return summarize(latencies)
