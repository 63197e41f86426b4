"""A real `shielding dev` stack as a subprocess, and a runner for `shielding` commands against it.

Each stack gets its own data dir and free, non-default ports (Temporal, its UI, the web service), so it never
clashes with another stack, a developer's own `shielding dev` or another test run on the same machine.
Commands act as a person only through a signed-in session: `stack.run(..., as_user="ivy")` signs ivy in once
(`shielding login ivy --password-stdin`) into a credentials file of her own, and passes it to every command.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shielding.processes import free_ports
from tests.helpers.servers import TEST_AUDIT_KEYS

SHIELDING = str(Path(sys.executable).parent / "shielding")
READY_TIMEOUT = 120.0
STOP_TIMEOUT = 60.0
COMMAND_TIMEOUT = 90.0

# Settings that would point a command somewhere other than the stack under test.
_FOREIGN_SETTINGS = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "DATABASE_URL",
    "SHIELDING_DATA_DIR",
    "SHIELDING_ACTOR",
    "SHIELDING_DEBUG",
    "SHIELDING_TASK_QUEUE",
    "SHIELDING_ENCRYPTION_KEYS",
    "SHIELDING_ACTION_KEYS",
    "SHIELDING_AUDIT_KEYS",
    "SHIELDING_AUDIT_ANCHOR_DIR",
    "SHIELDING_SESSION_SECRET",
    "SHIELDING_OIDC_ISSUER",
    "SHIELDING_ENVIRONMENT",
    "SHIELDING_LOG_LEVEL",
    "SHIELDING_DEV_TEMPORAL_PORT",
    "SHIELDING_DEV_UI_PORT",
    "SHIELDING_DEV_WEB_PORT",
    "SHIELDING_DEV_SMTP_PORT",
    "SHIELDING_SMTP_HOST",
    "SHIELDING_SMTP_PORT",
    "SHIELDING_NOTIFY_API_KEY",
    "SHIELDING_WEB_PORT",
    "SHIELDING_API_URL",
    "SHIELDING_CREDENTIALS",
    "SHIELDING_SESSION_IDLE_MINUTES",
)
PASSWORD_SUFFIX = "-correct-horse-battery"


def password_for(name: str) -> str:
    """Every test account's password (local accounts need at least 12 characters)."""
    return f"{name}{PASSWORD_SUFFIX}"


def base_env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_SETTINGS}
    env["SHIELDING_DATA_DIR"] = str(data_dir)
    # The test processes' audit key: a test that writes to a stack's database in-process signs as it does.
    env["SHIELDING_AUDIT_KEYS"] = TEST_AUDIT_KEYS
    # One test account reads the directory far more often than a person: the allowance is tested on its own
    # (tests/test_enumeration.py), not met by accident here.
    env["SHIELDING_DIRECTORY_READS_PER_WINDOW"] = "100000"
    env.update(extra)
    return env


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"$ shielding {' '.join(self.args)}\nexit {self.returncode}\n"
            f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}"
        )

    def json(self) -> Any:
        assert self.returncode == 0, str(self)
        try:
            return json.loads(self.stdout)
        except ValueError as err:
            raise AssertionError(f"stdout is not one JSON document ({err})\n{self}") from None


def no_session(data_dir: Path) -> Path:
    """A credentials file that is never written: a command run with it is signed in as nobody."""
    return data_dir.with_name(f"{data_dir.name}.no-session") / "credentials.json"


def run_cli(
    data_dir: Path,
    *args: str,
    credentials: Path | None = None,
    input: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
    **env: str,
) -> Result:
    """`shielding ARGS` as its own process; never with the developer's own saved session."""
    extra = {"SHIELDING_CREDENTIALS": str(credentials or no_session(data_dir))}
    completed = subprocess.run(
        [SHIELDING, *args],
        env=base_env(data_dir, **{**extra, **env}),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(list(args), completed.returncode, completed.stdout, completed.stderr)


class DevStack:
    """`shielding dev` in a subprocess: start() waits for `ready`, stop() sends SIGTERM and returns the output."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.temporal_port, self.ui_port, self.web_port, self.smtp_port = free_ports(4)
        self.process: subprocess.Popen[bytes] | None = None
        self._runs = 0
        self.credentials_dir = data_dir.with_name(f"{data_dir.name}.credentials")

    @property
    def stdout_path(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.{self._runs}.stdout")

    @property
    def stderr_path(self) -> Path:
        return self.data_dir.with_name(f"{self.data_dir.name}.{self._runs}.stderr")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def describe(self) -> str:
        log = self.data_dir / "temporal.log"
        temporal = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        return (
            f"--- shielding dev stdout\n{self.stdout()}--- shielding dev stderr (tail)\n{self.stderr()[-4000:]}"
            f"--- temporal.log (tail)\n{temporal}"
        )

    def start(self) -> None:
        for attempt in range(3):
            self._launch()
            if self._wait_ready():
                return
            # Another process may have taken a port between our probe and the dev server binding it.
            port_taken = "is in use" in self.stderr()
            self._terminate()
            if not port_taken or attempt == 2:
                raise AssertionError(f"`shielding dev` did not become ready\n{self.describe()}")
            self.temporal_port, self.ui_port, self.web_port, self.smtp_port = free_ports(4)
            # Sessions are kept for the service's address: on a new port everyone signs in again.
            shutil.rmtree(self.credentials_dir, ignore_errors=True)

    def _launch(self) -> None:
        assert self.process is None or self.process.poll() is not None
        self._runs += 1
        env = base_env(
            self.data_dir,
            SHIELDING_DEV_TEMPORAL_PORT=str(self.temporal_port),
            SHIELDING_DEV_UI_PORT=str(self.ui_port),
            SHIELDING_DEV_WEB_PORT=str(self.web_port),
            SHIELDING_DEV_SMTP_PORT=str(self.smtp_port),
        )
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.process = subprocess.Popen(
                [SHIELDING, "dev"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if "ready" in self.stdout().splitlines():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.25)
        return False

    def stop(self) -> tuple[int, str]:
        """SIGTERM, as an operator's Ctrl-C or a service manager would; returns (exit code, stdout)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._terminate()
            raise AssertionError(
                f"`shielding dev` did not stop within {STOP_TIMEOUT:.0f}s\n{self.describe()}"
            ) from None
        return code, self.stdout()

    def _terminate(self) -> None:
        """Last resort after a failure: end the stack's own processes so nothing outlives the test."""
        import psutil

        if self.process is None:
            return
        with contextlib.suppress(psutil.Error):
            parent = psutil.Process(self.process.pid)
            children = parent.children(recursive=True)
            for proc in [parent, *children]:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
            _, alive = psutil.wait_procs([parent, *children], timeout=20)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)
        # The embedded postmaster is daemonised (not our child); stop it through its pid file.
        pid_file = self.data_dir / "postgres" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
            postmaster = psutil.Process(int(pid_file.read_text().splitlines()[0]))
            if postmaster.name().startswith("postgres"):
                postmaster.terminate()

    def ensure_stopped(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self._terminate()

    # ------------------------------------------------------------------------------------ what it wrote

    def stack_file(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "stack.json").read_text())  # type: ignore[no-any-return]

    @property
    def web_url(self) -> str:
        return str(self.stack_file()["web_url"])

    @property
    def database_url(self) -> str:
        """The service's own database login (never the superuser)."""
        return str(self.stack_file()["database_url"])

    # ------------------------------------------------------------------------------------ people, commands

    def credentials(self, user: str) -> Path:
        """The credentials file of `user` (written by their `shielding login`)."""
        return self.credentials_dir / user / "credentials.json"

    def login(self, user: str, *, password: str | None = None, credentials: Path | None = None) -> Result:
        return run_cli(
            self.data_dir,
            "login",
            user,
            "--password-stdin",
            credentials=credentials or self.credentials(user),
            input=(password if password is not None else password_for(user)) + "\n",
        )

    def run(
        self,
        *args: str,
        as_user: str | None = None,
        input: str | None = None,
        timeout: float = COMMAND_TIMEOUT,
        **env: str,
    ) -> Result:
        """`shielding ARGS`, signed in as `as_user` (signing them in first if they have no session yet)."""
        credentials = None
        if as_user is not None:
            credentials = self.credentials(as_user)
            if not credentials.exists():
                signed_in = self.login(as_user)
                assert signed_in.returncode == 0, f"{as_user} could not sign in\n{signed_in}"
        return run_cli(self.data_dir, *args, credentials=credentials, input=input, timeout=timeout, **env)
