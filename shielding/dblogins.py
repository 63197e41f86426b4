"""The dev stack's database logins: the service's own login with a generated password, and sign-in rules.

The embedded server trusts its superuser on its private socket (that is how it manages itself); every other
role must give a password (scram-sha-256). Passwords live under the data dir in files created 0600.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from shielding.secrets import read_or_create_secret

SERVICE_ROLE = "shielding_service"
HBA_RULES = """# Written by `shielding dev`: the superuser only through the private socket (the server manages itself),
# every other role with its password.
local   all   postgres   trust
local   all   all        scram-sha-256
"""


def secret_file(path: Path, make: str | None = None) -> str:
    """Read a secret file, creating it 0600 (from the first byte) with a new random value when missing."""
    return read_or_create_secret(path, make)


def _with_login(superuser_url: str, role: str, password: str) -> str:
    parts = urlsplit(superuser_url)
    host = parts.hostname or ""
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def ensure_service_login(superuser_url: str, pgdata: Path, data_dir: Path) -> str:
    """Give the service role its password and require passwords of every login; returns the service's URL."""
    password = secret_file(data_dir / "db-service.password")
    hba = pgdata / "pg_hba.conf"
    if hba.read_text() != HBA_RULES:
        hba.write_text(HBA_RULES)
    set_service_password(superuser_url, password)
    with psycopg.connect(superuser_url, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    return _with_login(superuser_url, SERVICE_ROLE, password)


def set_service_password(admin_url: str, password: str) -> None:
    """Production: `shielding migrate` sets the service login's password it is given (compose passes it)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        statement = sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}")
        conn.execute(statement.format(sql.Identifier(SERVICE_ROLE), sql.Literal(password)))
