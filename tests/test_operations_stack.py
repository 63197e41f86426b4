"""Operations on a real `shielding dev` stack: Prometheus metrics that move with real work, and a stack that
heals — a worker killed while an intake is in flight is started again, the caller gets the normal answer, and
the records are shielded once.

The restart rule itself (`RestartPolicy`: the backoff, and when a part that keeps dying stops the stack) is a
pure function, tested alone at the top.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shielding.processes import RestartPolicy
from tests.helpers.devstack import SHIELDING, DevStack, base_env
from tests.test_cli import INTAKE, MANAGER, add_users_and_import, ok, request_args, start_stack, stop_stack

pytestmark = pytest.mark.slow

# ------------------------------------------------------------------------------------ the restart rule


def test_a_part_that_died_is_restarted_after_a_doubling_backoff() -> None:
    policy = RestartPolicy(max_deaths=5, window=300.0, first_delay=1.0, max_delay=30.0)
    assert [policy.died(t) for t in (0.0, 10.0, 20.0, 30.0)] == [1.0, 2.0, 4.0, 8.0]


def test_a_part_that_keeps_dying_is_given_up_on_but_one_that_recovered_is_not() -> None:
    dying = RestartPolicy(max_deaths=5, window=300.0)
    assert [dying.died(t) is None for t in (0.0, 1.0, 2.0, 3.0, 4.0)] == [False, False, False, False, True]
    # Deaths further apart than the window never add up: each is the first of its window again.
    recovering = RestartPolicy(max_deaths=5, window=300.0)
    assert [recovering.died(t * 301.0) for t in range(10)] == [1.0] * 10


def test_the_backoff_is_capped() -> None:
    policy = RestartPolicy(max_deaths=100, window=1e9, first_delay=1.0, max_delay=30.0)
    delays = [policy.died(float(t)) for t in range(10)]
    assert delays[-1] == 30.0 and max(d for d in delays if d is not None) == 30.0


# ------------------------------------------------------------------------------------------ the stack


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    root = Path(tempfile.mkdtemp(prefix="shielding-ops-"))
    # The queue gauges are read every second here (every 30 in a real service), so a test sees them move.
    os.environ["SHIELDING_METRICS_REFRESH_SECONDS"] = "1"
    try:
        running = start_stack(root)
    finally:
        os.environ.pop("SHIELDING_METRICS_REFRESH_SECONDS", None)
    try:
        add_users_and_import(running)
        yield running
        stop_stack(running)
    finally:
        running.ensure_stopped()
        shutil.rmtree(root, ignore_errors=True)


def scrape(url: str) -> str:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one series in a Prometheus exposition (0 when it is not there yet)."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if match and all(f'{key}="{value}"' in (match.group(1) or "") for key, value in labels.items()):
            total += float(match.group(2))
    return total


def wait_for(probe, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened")
        time.sleep(0.25)


def test_metrics_move_with_a_real_intake_and_a_refusal(stack: DevStack) -> None:
    urls = stack.stack_file()["metrics"]
    web_before, worker_before = scrape(urls["web"]), scrape(urls["worker"])
    shielded_before = sample(web_before, "shielding_intake_time_to_shield_seconds_count")
    refused_before = sample(web_before, "shielding_refusals_total", reason="refused")

    ok(stack.run(*request_args("CP-1003-RK"), "--json", as_user=INTAKE))
    refused = stack.run(*request_args("CP-1003-RK", criteria=("objection-in-principle",)), as_user=INTAKE)
    assert refused.returncode != 0

    web = scrape(urls["web"])
    assert sample(web, "shielding_intake_time_to_shield_seconds_count") == shielded_before + 1
    assert sample(web, "shielding_intake_time_to_shield_seconds_bucket", le="45") >= shielded_before + 1
    assert sample(web, "shielding_refusals_total", reason="refused") == refused_before + 1
    # The queue gauge follows the table: the new request waits for its form.
    wait_for(lambda: sample(scrape(urls["web"]), "shielding_forms_awaited") >= 1, "the forms gauge moving")
    # The worker's endpoint carries the SDK's own metrics, which moved with the workflow's tasks.
    worker = scrape(urls["worker"])
    tasks = "temporal_workflow_task_execution_latency_count"
    assert sample(worker, tasks) > sample(worker_before, tasks)
    assert 'process="worker"' in worker and 'process="web"' in web
    # No label or value names a child: the sample child's name, postcode and school appear nowhere.
    for text in (web, worker):
        for secret in ("Rohan", "Kapoor", "CP-1003-RK", "NW8", "school"):
            assert secret not in text


def test_a_worker_killed_during_an_intake_is_started_again_and_the_caller_is_answered(stack: DevStack) -> None:
    first = stack.stack_file()["processes"]["worker"]
    credentials = stack.credentials(INTAKE)
    if not credentials.exists():
        ok(stack.login(INTAKE))
    env = base_env(stack.data_dir, SHIELDING_CREDENTIALS=str(credentials))
    call = subprocess.Popen(
        [SHIELDING, *request_args("CP-1005-TM"), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)  # the call is on its way; the worker dies under it
    os.kill(first["pid"], signal.SIGKILL)
    out, err = call.communicate(timeout=90)
    assert call.returncode == 0, f"{out}\n{err}\n{stack.describe()}"
    assert '"awaiting-form"' in out
    restarted = wait_for(
        lambda: (p := stack.stack_file()["processes"].get("worker")) and p["pid"] != first["pid"] and p,
        "the worker's restart",
    )
    assert restarted["runs"] == first["runs"] + 1
    assert "the worker stopped unexpectedly" in stack.stdout() and "the worker: up again" in stack.stdout()
    # The stack is whole: the next call is answered as usual, and each child was shielded once.
    ok(stack.run(*request_args("CP-1004-ZO"), "--json", as_user=INTAKE))
    entries = ok(stack.run("audit", "--child", "CP-1005-TM", "--json", as_user=MANAGER)).json()["entries"]
    assert [e["action"] for e in entries if e["child_uid"] == "CP-1005-TM"].count("shielded") == 1
