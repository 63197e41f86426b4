"""Child processes of the dev stack, the benchmarks and the tests: started, watched and stopped one way.

Each process runs in its own session, so stopping it can also end whatever it left in its process group,
and nothing a stack started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now (held open together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ProcessFailed(RuntimeError):
    """A process exited early or did not become ready; the message carries the tail of its log."""


class ManagedProcess:
    """One child process in its own session, its output appended to a log file (optionally also forwarded)."""

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.stderr_path = stderr_path
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    # --------------------------------------------------------------------------------------- starting

    def start(self, *, on_line: Callable[[bytes], None] | None = None) -> None:
        """Start (or restart) it. With `on_line`, each output line is also handed to it as it arrives."""
        assert not self.alive(), f"{self.name} is already running"
        self.runs += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        err = self.stderr_path.open("ab") if self.stderr_path else None
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE if on_line else log,
            stderr=err or subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        if on_line is None:
            log.close()
        else:
            threading.Thread(target=self._forward, args=(self.process, log, on_line), daemon=True).start()
        if err is not None:
            err.close()

    @staticmethod
    def _forward(process: subprocess.Popen[bytes], log: object, on_line: Callable[[bytes], None]) -> None:
        assert process.stdout is not None
        with log:  # type: ignore[attr-defined]
            for line in process.stdout:
                log.write(line)  # type: ignore[attr-defined]
                log.flush()  # type: ignore[attr-defined]
                on_line(line)

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until `ready()` holds; fails with the log's tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.alive():
                raise ProcessFailed(f"{self.name} exited early (code {self.returncode})\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise ProcessFailed(f"{self.name} did not {what} in {timeout:.0f}s\n{self.log_tail()}")
            time.sleep(0.1)

    def wait_for_port(self, port: int, timeout: float) -> None:
        self.wait_until(lambda: port_open(port), timeout, f"open port {port}")

    # -------------------------------------------------------------------------------------- observing

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --------------------------------------------------------------------------------------- stopping

    def signal_group(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group at once (a crash, as the fault tests inject it)."""
        self.signal_group(signal.SIGKILL)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)

    def stop(self, grace: float = 15.0) -> int | None:
        """SIGTERM, as a service manager stops it; SIGKILL after `grace`; then anything left in its group."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.process.wait()
        self.signal_group(signal.SIGKILL)
        return self.process.returncode


@dataclass
class RestartPolicy:
    """When a supervised part that died is started again: after a backoff that doubles with each death in the
    window (1 s, 2 s, 4 s ... at most `max_delay`), unless it died `max_deaths` times within `window` seconds,
    when it is given up on (it keeps dying: restarting it again would only hide why)."""

    max_deaths: int = 5
    window: float = 300.0
    first_delay: float = 1.0
    max_delay: float = 30.0
    deaths: list[float] = field(default_factory=list)

    def died(self, at: float) -> float | None:
        """Record a death at monotonic time `at`; the seconds to wait before restarting, or None: give up."""
        self.deaths = [t for t in self.deaths if at - t < self.window] + [at]
        if len(self.deaths) >= self.max_deaths:
            return None
        return min(self.first_delay * 2 ** (len(self.deaths) - 1), self.max_delay)
