"""A Temporal dev server and a worker as separate processes, for tests that stop, kill and restart them."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from shielding.processes import ManagedProcess, free_ports
from shielding.settings import Settings
from shielding.temporal import data_converter, dev_server_command

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0


class TemporalDevServer:
    """`temporal server start-dev` as `shielding dev` runs it (tuned, on a SQLite file), on free ports."""

    def __init__(self, directory: Path, settings: Settings) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (self.port,) = free_ports(1)
        command = dev_server_command(port=self.port, ui_port=None, db_file=directory / "temporal.sqlite")
        self.process = ManagedProcess("the Temporal dev server", command, directory / "temporal.log")
        self.converter = data_converter(settings)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.process.log_text()[-6000:]

    async def start(self) -> None:
        """The port opens before the namespace is served: ready means a client can describe `default`."""
        self.process.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if not self.process.alive():
                raise AssertionError(f"the Temporal dev server exited (code {self.process.returncode})\n{self.log()}")
            try:
                client = await self.client()
                await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
                return
            except (RuntimeError, RPCError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"the Temporal dev server was not ready in time\n{self.log()}") from None
                await asyncio.sleep(0.2)

    async def client(self) -> Client:
        return await Client.connect(self.address, data_converter=self.converter)

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM, as a service manager stops it; returns the exit code."""
        return self.process.stop(grace)


class WorkerProcess:
    """`python -m worker.main`, configured only through its environment, as in production."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "worker.main"]
        self.process = ManagedProcess("the worker", command, log_dir / "worker.log", env=env, cwd=REPO)
        self._log_offset = 0

    def logs(self) -> str:
        return self.process.log_text()[-6000:]

    async def start(self) -> None:
        self._log_offset = len(self.process.log_text())
        self.process.start()
        deadline = time.monotonic() + READY_TIMEOUT
        while "worker started" not in self.process.log_text()[self._log_offset :]:
            if not self.process.alive():
                raise AssertionError(f"the worker exited early (code {self.process.returncode})\n{self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the worker did not start in time\n{self.logs()}")
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        self.process.kill()

    def stop(self) -> None:
        self.process.stop(20.0)
