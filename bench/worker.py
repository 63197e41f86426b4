"""The benchmark's worker process: our worker (worker.main.build_worker) and/or the floor worker.

Run as a child of `python -m bench`, one per server, so its memory can be measured on its own and an abort
at interpreter exit (sdk-python#300) cannot take the benchmark down. Ready when it writes --ready-file;
SIGTERM drains and exits.

    python -m bench.worker --address 127.0.0.1:PORT --database-url URL --task-queue Q \
        [--floor-task-queue F] [--max-cached-workflows N] --ready-file PATH
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import os
import pstats
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.shielding import ShieldingActivities
from bench.floor import FLOOR_ACTIVITIES, FLOOR_WORKFLOWS
from shielding import store
from shielding.log import configure_logging
from shielding.settings import Settings
from shielding.temporal import connect
from worker.main import build_worker, workflow_runner


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--address", required=True)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--task-queue", default=None, help="run our workflow on this task queue")
    parser.add_argument("--floor-task-queue", default=None, help="run the floor workflows on this task queue")
    parser.add_argument("--max-cached-workflows", type=int, default=None)
    parser.add_argument("--ready-file", required=True)
    parser.add_argument(
        "--passthrough-workflows",
        action="store_true",
        help="experiment: pass the workflows package through the sandbox instead of re-importing it per run",
    )
    parser.add_argument(
        "--profile-dir",
        default=None,
        help="cProfile the workflow-task threads and the event-loop thread; pstats files written here at exit",
    )
    return parser.parse_args(argv)


class ProfilingExecutor(ThreadPoolExecutor):
    """The workflow-task thread pool, each thread under its own cProfile (workflow code runs in these)."""

    def __init__(self) -> None:
        self.profiles: list[cProfile.Profile] = []
        super().__init__(max_workers=50, thread_name_prefix="bench_workflow_", initializer=self._profile_thread)

    def _profile_thread(self) -> None:
        profile = cProfile.Profile()
        self.profiles.append(profile)
        profile.enable()


def _dump(profiles: list[cProfile.Profile], path: Path) -> None:
    if not profiles:
        return
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)
    stats.dump_stats(str(path))


async def run(args: argparse.Namespace) -> None:
    overrides: dict[str, object] = {
        "TEMPORAL_ADDRESS": args.address,
        "task_queue": args.task_queue or "unused",
    }
    if args.database_url:
        overrides["DATABASE_URL"] = args.database_url
    if args.max_cached_workflows is not None:
        overrides["max_cached_workflows"] = args.max_cached_workflows
    settings = Settings(**overrides)  # type: ignore[arg-type]  # keys come from SHIELDING_ENCRYPTION_KEYS
    configure_logging(settings.log_level or "INFO")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    client = await connect(settings)
    executor = ProfilingExecutor() if args.profile_dir else None
    main_profile = cProfile.Profile() if args.profile_dir else None
    if main_profile is not None:
        main_profile.enable()
    async with contextlib.AsyncExitStack() as stack:
        if args.task_queue:
            pool = await store.create_pool(settings.resolved_database_url(), max_size=10)
            stack.push_async_callback(pool.close)
            extra: dict[str, object] = {}
            if executor is not None:
                extra["workflow_task_executor"] = executor
            if args.passthrough_workflows:
                extra["workflow_runner"] = SandboxedWorkflowRunner(
                    restrictions=workflow_runner().restrictions.with_passthrough_modules("workflows")
                )
            await stack.enter_async_context(build_worker(client, ShieldingActivities(pool), settings, **extra))
        if args.floor_task_queue:
            floor = Worker(
                client,
                task_queue=args.floor_task_queue,
                workflows=FLOOR_WORKFLOWS,
                activities=FLOOR_ACTIVITIES,
                workflow_runner=workflow_runner(),
                max_cached_workflows=settings.max_cached_workflows,
                graceful_shutdown_timeout=timedelta(seconds=10),
            )
            await stack.enter_async_context(floor)
        Path(args.ready_file).write_text(str(os.getpid()))
        await stop.wait()
    if executor is not None and main_profile is not None:
        main_profile.disable()
        executor.shutdown(wait=True)
        _dump([main_profile], Path(args.profile_dir) / "event-loop-thread.pstats")
        _dump(executor.profiles, Path(args.profile_dir) / "workflow-threads.pstats")


def main(argv: list[str] | None = None) -> None:
    code = 0
    try:
        asyncio.run(run(_parse(argv)))
    except Exception as err:  # noqa: BLE001 - reported to the log file the parent keeps
        print(f"bench worker failed: {err!r}", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Skip interpreter teardown: the SDK's core threads can abort it (sdk-python#300).
    os._exit(code)


if __name__ == "__main__":
    main()
