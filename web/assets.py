"""The staff pages' front-end assets: npm packages pinned by `web/frontend/package-lock.json`, and the stylesheet.

`python -m web.assets` (run by the setup scripts) installs the locked packages with `npm ci` when
`node_modules` is missing or was installed from another lock file, then builds `web/frontend/build/`
(`npm run build`: the Sass of GOV.UK Frontend and MOJ Frontend compiled with Arial instead of GDS Transport,
and the module script) when its inputs changed. Both steps are skipped when nothing changed, so it is cheap to
run every time. The service itself never runs npm: it serves what is here (`web.pages.static`), and nothing is
fetched when it runs.

    python -m web.assets               # packages for development and the tests (axe-core included)
    python -m web.assets --production  # without the test-only packages
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FRONTEND_DIR = Path(__file__).resolve().parent / "frontend"
PACKAGE_JSON = FRONTEND_DIR / "package.json"
PACKAGE_LOCK = FRONTEND_DIR / "package-lock.json"
SOURCE_DIR = FRONTEND_DIR / "src"
NODE_MODULES = FRONTEND_DIR / "node_modules"
BUILD_DIR = FRONTEND_DIR / "build"

# What the pages serve (`web.pages.static`) and the browser tests inject, all from the installed packages.
GOVUK_FRONTEND_DIR = NODE_MODULES / "govuk-frontend" / "dist" / "govuk"
GOVUK_ASSETS_DIR = GOVUK_FRONTEND_DIR / "assets"
MOJ_FRONTEND_DIR = NODE_MODULES / "@ministryofjustice" / "frontend" / "moj"
MOJ_ASSETS_DIR = MOJ_FRONTEND_DIR / "assets"
AXE_SCRIPT = NODE_MODULES / "axe-core" / "axe.min.js"
STYLESHEET = BUILD_DIR / "application.css"

_INSTALLED_STAMP = NODE_MODULES / ".shielding-installed"
_BUILT_STAMP = BUILD_DIR / ".shielding-built"


class FrontendNotInstalled(RuntimeError):
    """The front-end packages or the built stylesheet are missing or out of date; the message says what to run."""


def _digest(paths: list[Path], *extra: str) -> str:
    hasher = hashlib.sha256()
    for path in paths:
        hasher.update(path.relative_to(FRONTEND_DIR).as_posix().encode() + b"\0")
        hasher.update(path.read_bytes() + b"\0")
    for value in extra:
        hasher.update(value.encode() + b"\0")
    return hasher.hexdigest()


def _install_digest(*, production: bool) -> str:
    return _digest([PACKAGE_JSON, PACKAGE_LOCK], "production" if production else "development")


def _build_digest() -> str:
    sources = sorted(p for p in SOURCE_DIR.rglob("*") if p.is_file())
    return _digest([PACKAGE_JSON, PACKAGE_LOCK, *sources])


def _stamp(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _installed(*, production: bool) -> bool:
    stamp = _stamp(_INSTALLED_STAMP)
    wanted = {_install_digest(production=production)}
    if production:
        # A development install holds every production package too.
        wanted.add(_install_digest(production=False))
    return stamp in wanted


def _built() -> bool:
    return _stamp(_BUILT_STAMP) == _build_digest() and STYLESHEET.is_file()


def check_frontend_installed(*, production: bool = False) -> None:
    """Raise `FrontendNotInstalled` unless the locked packages are installed and the stylesheet is built from them."""
    if not _installed(production=production):
        raise FrontendNotInstalled(
            f"the front-end packages in {NODE_MODULES} are missing or were installed from another lock file: "
            "run `python -m web.assets`"
        )
    if not _built():
        raise FrontendNotInstalled(
            f"the stylesheet in {BUILD_DIR} is missing or out of date: run `python -m web.assets`"
        )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FrontendNotInstalled(f"{name} is not on PATH: the staff pages' assets need Node.js 20.19 or later")
    return path


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(command, cwd=FRONTEND_DIR, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()
        raise FrontendNotInstalled(f"{what} failed (exit {done.returncode}):\n{output[-4000:]}")


@contextmanager
def _locked() -> Iterator[None]:
    """One install at a time (two test processes, or the dev stack beside the tests), on the lock file itself."""
    with PACKAGE_LOCK.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_frontend_installed(*, production: bool = False) -> list[str]:
    """Install the locked packages (`npm ci`) and build the stylesheet, each only when needed; returns what it did.

    Idempotent and safe to run concurrently. `production` leaves out the test-only packages (axe-core).
    """
    done: list[str] = []
    with _locked():
        if not _installed(production=production):
            _tool("node")
            command = [_tool("npm"), "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
            command.append("--omit=dev" if production else "--include=dev")
            _run(command, "npm ci")
            _INSTALLED_STAMP.write_text(_install_digest(production=production) + "\n")
            done.append(f"installed the locked packages in {NODE_MODULES}")
        if not _built():
            _run([_tool("npm"), "run", "--silent", "build"], "npm run build")
            _BUILT_STAMP.write_text(_build_digest() + "\n")
            done.append(f"built {STYLESHEET}")
    check_frontend_installed(production=production)
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m web.assets", description=__doc__.splitlines()[0])
    parser.add_argument("--production", action="store_true", help="leave out the test-only packages (axe-core)")
    args = parser.parse_args(argv)
    try:
        done = ensure_frontend_installed(production=args.production)
    except FrontendNotInstalled as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print("; ".join(done) if done else "front-end assets already installed and built")
    return 0


if __name__ == "__main__":
    sys.exit(main())
