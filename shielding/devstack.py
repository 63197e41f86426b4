"""`shielding dev`: the whole service on one machine, on embedded defaults, in the foreground.

Temporal dev server (SQLite file and Web UI) + a private PostgreSQL, both under the data dir, then
migrations, then the worker and the web service as child processes. Only this process holds the database
superuser; the worker, the web service and every command get the service's own login. Ctrl-C or SIGTERM
stops all of it; running it again resumes every sleeping workflow from the same files.

It supervises the worker and the web service: one that dies is started again after a backoff, with a line
saying so (an intake in flight waits out the gap: its workflow carries on when the worker is back); only a part
that keeps dying (`RestartPolicy`) stops the stack, saying why. Temporal and PostgreSQL hold the state: if
either dies, the stack stops. Each of the two processes serves Prometheus metrics on a port of its own (in the
stack file and printed at start).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from shielding.action_auth import ensure_dev_action_keys
from shielding.audit_signing import ensure_dev_audit_keys
from shielding.codec import generate_key_spec
from shielding.processes import ManagedProcess, ProcessFailed, RestartPolicy, free_ports, port_free
from shielding.secrets import write_secret_file
from shielding.settings import ConfigurationError, Settings
from shielding.temporal import dev_server_command

READY_TIMEOUT = 90.0


def _say(message: str) -> None:
    print(message, flush=True)


def ensure_encryption_keys(data_dir: Path) -> Path:
    """`<data_dir>/encryption.keys`, made with a new key if missing: readable by its owner only from the start."""
    path = data_dir / "encryption.keys"
    write_secret_file(path, generate_key_spec("dev-" + time.strftime("%Y%m%d")) + "\n")
    return path


class DevStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.temporal: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None
        self.web: ManagedProcess | None = None
        self.postgres: Any = None
        self.mail: Any = None
        self.stopping = threading.Event()
        self.env: dict[str, str] = {}
        self.stack: dict[str, Any] = {}
        # The Prometheus ports of the worker and the web service (free ones, chosen at start).
        self.metrics_ports: dict[str, int] = {}
        self.restarts = {"worker": RestartPolicy(), "web": RestartPolicy()}

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ports = (self.settings.dev_temporal_port, self.settings.dev_ui_port, self.settings.dev_web_port)
        for port in (*ports, self.settings.dev_smtp_port):
            if not port_free(port):
                raise ConfigurationError(
                    f"port {port} is in use: is another `shielding dev` or Temporal server running?"
                )
        ensure_encryption_keys(self.data_dir)
        # The worker and the web service read these from the data dir (development only).
        ensure_dev_action_keys(self.data_dir)
        ensure_dev_audit_keys(self.data_dir)
        superuser_url = self._start_postgres()
        _say("postgres: up")
        from shielding import store
        from shielding.dblogins import ensure_service_login

        applied = store.migrate(superuser_url)
        _say(f"migrations: {len(applied)} applied")
        database_url = ensure_service_login(superuser_url, self.data_dir / "postgres", self.data_dir)
        self._start_temporal()
        _say("temporal: up")
        temporal_address = f"127.0.0.1:{self.settings.dev_temporal_port}"
        self.env = self._service_env(temporal_address, database_url)
        worker_port, web_port = free_ports(2)
        self.metrics_ports = {"worker": worker_port, "web": web_port}
        self._start_mail_sink()
        _say(f"mail: every message the service sends is kept in {self.data_dir / 'mail'} (Maildir)")
        self._start_worker()
        _say("worker: up")
        self._start_web()
        _say("web: up")
        self._write_stack_file(temporal_address, database_url)

    def _start_postgres(self) -> str:
        from shielding.embedded_postgres import start_embedded_postgres

        os.chmod(self.data_dir, 0o755)
        # A directory made by the old embedded server (PostgreSQL 16) is moved over here, keeping a backup.
        self.postgres = start_embedded_postgres(self.data_dir / "postgres", cleanup="stop")
        if self.postgres.upgraded_from is not None:
            _say(f"postgres: moved to PostgreSQL 18; the old directory is kept in {self.postgres.upgraded_from}")
        return str(self.postgres.uri)

    def _start_temporal(self) -> None:
        command = dev_server_command(
            port=self.settings.dev_temporal_port,
            ui_port=self.settings.dev_ui_port,
            db_file=self.data_dir / "temporal.sqlite",
            namespace=self.settings.temporal_namespace,
        )
        self.temporal = ManagedProcess("the Temporal dev server", command, self.data_dir / "temporal.log")
        self.temporal.start()
        for port in (self.settings.dev_temporal_port, self.settings.dev_ui_port):
            self.temporal.wait_for_port(port, READY_TIMEOUT)

    def _start_mail_sink(self) -> None:
        """The relay's SMTP server in development (aiosmtpd, in this process): it keeps each message it is sent
        in `<data_dir>/mail` (Maildir), to read with any mail reader, and sends nothing on."""
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox

        mail_dir = self.data_dir / "mail"
        for part in ("tmp", "new", "cur"):
            (mail_dir / part).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.mail = Controller(Mailbox(mail_dir), hostname="127.0.0.1", port=self.settings.dev_smtp_port)
        self.mail.start()

    @property
    def web_url(self) -> str:
        return f"http://localhost:{self.settings.dev_web_port}"

    def _write_stack_file(self, temporal_address: str, database_url: str) -> None:
        self.stack = {
            "temporal_address": temporal_address,
            "database_url": database_url,
            "web_url": self.web_url,
            "namespace": self.settings.temporal_namespace,
            "pid": os.getpid(),
            "metrics": {part: f"http://127.0.0.1:{port}/metrics" for part, port in self.metrics_ports.items()},
        }
        self._rewrite_stack_file()

    def _rewrite_stack_file(self) -> None:
        """The stack file with the worker's and the web service's current process ids (they change on a restart)."""
        stack = {**self.stack, "processes": {}}
        for part, process in (("worker", self.worker), ("web", self.web)):
            if process is not None and process.alive():
                stack["processes"][part] = {"pid": process.pid, "runs": process.runs}
        # It names the service's database login with its password: 0600 from creation, replaced atomically.
        write_secret_file(self.settings.stack_file(), json.dumps(stack), replace=True)

    def _service_env(self, temporal_address: str, database_url: str) -> dict[str, str]:
        """The worker's and the web service's settings: the service's database login, never the superuser."""
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": temporal_address,
            "DATABASE_URL": database_url,
            "SHIELDING_DATA_DIR": str(self.data_dir),
            "SHIELDING_WEB_HOST": "127.0.0.1",
            "SHIELDING_WEB_PORT": str(self.settings.dev_web_port),
            # The relay delivers to the local mail sink (no Notify key in development).
            "SHIELDING_SMTP_HOST": "127.0.0.1",
            "SHIELDING_SMTP_PORT": str(self.settings.dev_smtp_port),
            # The sandbox compiles the workflow module for every new workflow unless bytecode is cached.
            "PYTHONPYCACHEPREFIX": str(self.data_dir / "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        return env

    def _forwarding(self, marker: bytes) -> tuple[threading.Event, Callable[[bytes], None]]:
        ready = threading.Event()

        def forward(line: bytes) -> None:
            if marker in line:
                ready.set()
            sys.stderr.buffer.write(line)
            sys.stderr.flush()

        return ready, forward

    def _part_env(self, part: str) -> dict[str, str]:
        return {**self.env, "SHIELDING_METRICS_ADDRESS": f"127.0.0.1:{self.metrics_ports[part]}"}

    def _start_web(self) -> None:
        if self.web is None:
            self.web = ManagedProcess(
                "the web service", [sys.executable, "-m", "web"], self.data_dir / "web.log", env=self._part_env("web")
            )
        _, forward = self._forwarding(b"\0")
        self.web.start(on_line=forward)
        self.web.wait_for_port(self.settings.dev_web_port, READY_TIMEOUT)

    def _start_worker(self) -> None:
        ready, forward = self._forwarding(b"worker started")
        # A child process, so a worker that dies at exit (sdk-python#300) never takes the stack down with it.
        if self.worker is None:
            self.worker = ManagedProcess(
                "the worker",
                [sys.executable, "-m", "worker.main"],
                self.data_dir / "worker.log",
                env=self._part_env("worker"),
            )
        self.worker.start(on_line=forward)
        self.worker.wait_until(ready.is_set, READY_TIMEOUT, "start")

    def watch(self) -> int:
        """Block until asked to stop, restarting a worker or web service that dies; returns the exit code
        (1: Temporal or PostgreSQL died, or a part kept dying)."""
        while not self.stopping.wait(0.5):
            if self.temporal is not None and self.temporal.process is not None and not self.temporal.alive():
                _say(f"{self.temporal.name} stopped unexpectedly (code {self.temporal.returncode}); shutting down")
                return 1
            for part, process, restart in (
                ("worker", self.worker, self._start_worker),
                ("web", self.web, self._start_web),
            ):
                died = process is not None and process.process is not None and not process.alive()
                if died and process is not None and not self._restart(part, process, restart):
                    return 1
        return 0

    def _restart(self, part: str, process: ManagedProcess, start: Callable[[], None]) -> bool:
        """Start a part that died again, after its backoff; False when it keeps dying (the stack stops)."""
        while True:
            policy = self.restarts[part]
            delay = policy.died(time.monotonic())
            code = process.returncode
            if delay is None:
                _say(
                    f"{process.name} keeps stopping ({len(policy.deaths)} times in {policy.window / 60:.0f} minutes, "
                    f"last code {code}); shutting down. Its log: {process.log_path}"
                )
                return False
            _say(f"{process.name} stopped unexpectedly (code {code}); starting it again in {delay:.0f}s")
            if self.stopping.wait(delay):
                return True
            try:
                start()
            except ProcessFailed as err:
                _say(f"{process.name} did not start again: {str(err).splitlines()[0]}")
                continue
            _say(f"{process.name}: up again")
            self._rewrite_stack_file()
            return True

    def stop(self) -> None:
        self.stopping.set()
        for process in (self.web, self.worker, self.temporal):
            if process is not None and process.alive():
                process.stop(grace=15.0)
        if self.postgres is not None:
            self.postgres.stop()
        if self.mail is not None:
            self.mail.stop()
        with contextlib.suppress(FileNotFoundError):
            self.settings.stack_file().unlink()
        _say("stopped")


def run_dev_stack(settings: Settings) -> int:
    stack = DevStack(settings)

    def on_signal(signum: int, _: FrameType | None) -> None:
        stack.stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        _say("ready")
        _say(f"temporal:  127.0.0.1:{settings.dev_temporal_port} (namespace {settings.temporal_namespace})")
        _say(f"web: http://localhost:{settings.dev_web_port}")
        _say(f"web ui:    http://localhost:{settings.dev_ui_port}")
        _say(f"data dir:  {stack.data_dir}")
        code = stack.watch()
    except (ConfigurationError, ProcessFailed) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stack.stop()
    return code
