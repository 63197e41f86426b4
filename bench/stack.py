"""The benchmark's own stack: a fresh PostgreSQL, fresh Temporal dev servers and worker processes.

Everything lives under one temp dir and every process is started here in its own session, so `Stack.close`
(called from a `finally`, also on Ctrl-C/SIGTERM) can stop exactly what it started and delete the dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from shielding.processes import ManagedProcess
from shielding.temporal import dev_server_command

READY_TIMEOUT = 90.0
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not on PATH; install the test extras (pip install -e '.[test]')")
    return path


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 1e6


def configure_client_logging(path: Path) -> None:
    """Our service logs one JSON line per intake at INFO, as in production; here into a file, not the table."""
    import structlog

    from shielding.log import configure_logging

    configure_logging("INFO")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=path.open("a")))


def tree_cpu_s(pid: int, *, descendants: bool = True) -> float:
    """CPU seconds (user + system) used so far by a process and (by default) its live descendants."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)] if descendants else [proc]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = p.cpu_times()
            total += times.user + times.system
    return total


# The benchmarks' processes are the dev stack's: one supervisor for both.
Managed = ManagedProcess


@dataclass
class TemporalServer:
    managed: Managed
    port: int
    tuned: bool

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class Stack:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="shielding-bench-")))
    processes: list[Managed] = field(default_factory=list)
    postgres: object | None = None
    database_url: str = ""
    closed: bool = False

    # ----------------------------------------------------------------------------------------- processes

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> Managed:
        managed = ManagedProcess(name, command, self.root / f"{name}.log", env=env, cwd=self.root)
        managed.start()
        self.processes.append(managed)
        return managed

    def stop(self, managed: Managed, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace`; then anything it left in its own process group."""
        managed.stop(grace)
        if managed in self.processes:
            self.processes.remove(managed)

    # ----------------------------------------------------------------------------------------- postgres

    def start_postgres(self) -> str:
        from shielding.embedded_postgres import start_embedded_postgres

        os.chmod(self.root, 0o755)
        server = start_embedded_postgres(self.root / "postgres", cleanup="delete")
        self.postgres = server
        self.database_url = str(server.get_uri())
        return self.database_url

    def postgres_pid(self) -> int | None:
        if self.postgres is None:
            return None
        return self.postgres.get_pid()  # type: ignore[attr-defined,no-any-return]

    # ----------------------------------------------------------------------------------------- temporal

    def start_temporal(self, name: str, *, tuned: bool) -> TemporalServer:
        """A fresh dev server: tuned (our flags, WAL SQLite file, our search attributes) or as it comes."""
        port = free_port()
        db_file = self.root / f"{name}.sqlite" if tuned else None
        command = dev_server_command(port=port, ui_port=None, db_file=db_file, tuned=tuned)
        return TemporalServer(self._spawn(name, command), port, tuned)

    async def wait_temporal(self, server: TemporalServer) -> None:
        from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
        from temporalio.client import Client

        deadline = time.monotonic() + READY_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not server.managed.alive():
                raise RuntimeError(f"{server.managed.name} exited early:\n{server.managed.log_tail()}")
            try:
                client = await Client.connect(server.address)
                await client.workflow_service.get_system_info(GetSystemInfoRequest())
                return
            except Exception as err:  # noqa: BLE001 - not up yet
                last = err
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{server.managed.name} did not come up in {READY_TIMEOUT:.0f}s: {last!r}")

    # ------------------------------------------------------------------------------------------- worker

    async def start_worker(
        self,
        name: str,
        server: TemporalServer,
        *,
        encryption_keys: str,
        action_keys: str,
        task_queue: str | None = None,
        floor_task_queue: str | None = None,
        max_cached_workflows: int | None = None,
        profile_dir: Path | None = None,
        passthrough_workflows: bool = False,
        bytecode_cache: bool = True,
    ) -> Managed:
        ready = self.root / f"{name}.ready"
        command = [sys.executable, "-m", "bench.worker", "--address", server.address, "--ready-file", str(ready)]
        if task_queue:
            command += ["--task-queue", task_queue, "--database-url", self.database_url]
        if floor_task_queue:
            command += ["--floor-task-queue", floor_task_queue]
        if max_cached_workflows is not None:
            command += ["--max-cached-workflows", str(max_cached_workflows)]
        if profile_dir is not None:
            command += ["--profile-dir", str(profile_dir)]
        if passthrough_workflows:
            command += ["--passthrough-workflows"]
        env = dict(os.environ)
        if bytecode_cache:
            # As deployed (pip compiles the package at install): cached bytecode, so the sandbox does not
            # compile the workflow module from source for every new workflow. Kept under the temp dir.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.root / "pycache")
        env |= {
            "SHIELDING_ENCRYPTION_KEYS": encryption_keys,
            "SHIELDING_ACTION_KEYS": action_keys,
            "SHIELDING_LOG_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p),
        }
        managed = self._spawn(name, command, env)
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if not managed.alive():
                raise RuntimeError(f"{name} exited early:\n{managed.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in {READY_TIMEOUT:.0f}s:\n{managed.log_tail()}")
            await asyncio.sleep(0.1)
        return managed

    # -------------------------------------------------------------------------------------------- close

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Workers first (they drain against live servers), then servers, then PostgreSQL.
        order = sorted(self.processes, key=lambda m: 0 if "worker" in m.name else 1)
        for managed in order:
            with contextlib.suppress(Exception):
                self.stop(managed, grace=15.0 if "worker" in managed.name else 10.0)
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.cleanup()  # type: ignore[attr-defined]
            self.postgres = None
        if os.environ.get("BENCH_KEEP_TEMP"):
            print(f"BENCH_KEEP_TEMP: kept {self.root}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
