"""The worker: runs ShieldingRequestWorkflow and its activities until SIGINT/SIGTERM, then drains."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.shielding import ShieldingActivities
from shielding import store
from shielding.action_auth import action_keys_from_settings, configure_action_keys
from shielding.log import configure_logging, get_logger
from shielding.settings import Settings, get_settings
from shielding.temporal import connect
from workflows.shielding_request import ShieldingRequestWorkflow

log = get_logger(__name__)


def workflow_runner() -> SandboxedWorkflowRunner:
    # The bank-holiday calendar (holidays, and dateutil under it) reads the local time zone at import, which
    # the sandbox forbids; shielding.deadlines loads it once, outside the sandbox.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("holidays", "dateutil", "six")
    )


def build_worker(client: Client, activities: ShieldingActivities, settings: Settings, **overrides: object) -> Worker:
    # The keys every staff action and intake is checked with (workflow code reads them; it reads no settings).
    # Raises ConfigurationError, before anything runs, when production has none.
    configure_action_keys(action_keys_from_settings(settings))
    options: dict[str, object] = {
        "task_queue": settings.task_queue,
        "workflows": [ShieldingRequestWorkflow],
        "workflow_runner": workflow_runner(),
        "activities": activities.all(),
        "max_cached_workflows": settings.max_cached_workflows,
        "graceful_shutdown_timeout": timedelta(seconds=10),
    }
    options.update(overrides)
    return Worker(client, **options)  # type: ignore[arg-type]


async def run_worker(settings: Settings | None = None, stop: asyncio.Event | None = None) -> None:
    settings = settings or get_settings()
    configure_logging(settings.log_level or "INFO")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    async with store.pool_for(settings.resolved_database_url(), max_size=10) as pool:
        worker = build_worker(client, ShieldingActivities(pool), settings)
        async with worker:
            log.info("worker started", task_queue=settings.task_queue)
            await stop.wait()
            log.info("worker stopping")
    log.info("worker stopped")


def main() -> None:
    asyncio.run(run_worker())
    # The worker has drained and closed its connections; skip interpreter finalisation, where the SDK's
    # native threads can abort the process (sdk-python#300) and turn a clean stop into a crash.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
