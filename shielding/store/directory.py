"""The child directory: importing records, matching identities, and the practitioners' redacted read path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import asyncpg
from pydantic import BaseModel

from shielding import messages
from shielding.domain import AuditAction, ChildRecord
from shielding.store.audit import RecipientKind, append_audit, notify
from shielding.store.db import jsonable, jsonable_row

PRACTITIONER_FIELDS = ("uid", "given_name", "family_name", "aliases", "gender", "date_of_birth", "shielded")
HIDDEN_FIELDS = ("address", "carers", "school", "gp_practice", "practitioners")


class ImportResult(BaseModel):
    imported: int
    created: int
    updated: int
    linked_duplicates: list[str] = []


def _record_args(record: ChildRecord) -> tuple[Any, ...]:
    return (
        record.uid,
        record.given_name,
        record.family_name,
        list(record.aliases),
        record.gender.value,
        record.date_of_birth,
        record.address.model_dump(mode="json") if record.address else None,
        [c.model_dump(mode="json", exclude_none=True) for c in record.carers],
        record.school,
        record.gp_practice,
        list(record.practitioners),
    )


async def import_children(pool: asyncpg.Pool, records: Sequence[ChildRecord], *, actor: str) -> ImportResult:
    """Insert or update records, all or nothing.

    A new record whose identity (name or alias, date of birth, gender) matches a shielded child under another
    uid is shielded at once and linked to that child's request: a data feed must never re-expose a child.
    """
    created = updated = 0
    linked: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        for record in records:
            existed = await conn.fetchval(
                """INSERT INTO children (uid, given_name, family_name, aliases, gender, date_of_birth, address,
                                         carers, school, gp_practice, practitioners)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                   ON CONFLICT (uid) DO UPDATE SET
                     given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name,
                     aliases = EXCLUDED.aliases, gender = EXCLUDED.gender,
                     date_of_birth = EXCLUDED.date_of_birth, address = EXCLUDED.address,
                     carers = EXCLUDED.carers, school = EXCLUDED.school, gp_practice = EXCLUDED.gp_practice,
                     practitioners = EXCLUDED.practitioners, updated_at = now()
                   RETURNING (xmax <> 0)""",
                *_record_args(record),
            )
            if existed:
                updated += 1
            else:
                created += 1
            request_id = await _shielded_identity_match(conn, record)
            if request_id is not None:
                await _link_duplicate_record(conn, record.uid, request_id, actor=actor)
                linked.append(record.uid)
    return ImportResult(imported=len(records), created=created, updated=updated, linked_duplicates=linked)


async def _shielded_identity_match(conn: asyncpg.Connection, record: ChildRecord) -> str | None:
    names = [n.lower() for n in (record.given_name, *record.aliases)]
    family = [n.lower() for n in (record.family_name, *record.aliases)]
    full = [f"{record.given_name} {record.family_name}".lower(), *(a.lower() for a in record.aliases)]
    return await conn.fetchval(  # type: ignore[no-any-return]
        """SELECT shield_request_id FROM children
           WHERE shield_request_id IS NOT NULL AND uid <> $1 AND date_of_birth = $2 AND gender = $3
             AND (
               (lower(given_name) = ANY($4::text[]) AND lower(family_name) = ANY($5::text[]))
               OR lower(given_name || ' ' || family_name) = ANY($6::text[])
               OR EXISTS (SELECT 1 FROM unnest(aliases) a WHERE lower(a) = ANY($6::text[]))
             )
           ORDER BY uid LIMIT 1""",
        record.uid,
        record.date_of_birth,
        record.gender.value,
        names,
        family,
        full,
    )


async def _link_duplicate_record(conn: asyncpg.Connection, uid: str, request_id: str, *, actor: str) -> None:
    changed = await conn.fetchval(
        """UPDATE children SET shield_request_id = $2 WHERE uid = $1 AND shield_request_id IS NULL
           RETURNING 1""",
        uid,
        request_id,
    )
    if not changed:
        return
    await conn.execute(
        """INSERT INTO request_children (request_id, child_uid, outcome, shielded_at)
           VALUES ($1, $2, 'linked-duplicate-record', now())
           ON CONFLICT (request_id, child_uid) DO UPDATE SET shielded_at = now(), unshielded_at = NULL""",
        request_id,
        uid,
    )
    await append_audit(
        conn,
        action=AuditAction.SHIELDED,
        actor=actor,
        request_id=request_id,
        child_uid=uid,
        reason=messages.IMPORTED_DUPLICATE_AUDIT,
        details={"linked_duplicate_record": True},
    )
    group = RecipientKind.REVIEWERS.value
    await notify(
        conn,
        recipient_kind=group,
        recipient=group,
        request_id=request_id,
        subject=messages.duplicate_record_subject(request_id),
        body=messages.duplicate_record_body(uid, request_id),
    )


def practitioner_record(row: dict[str, Any]) -> dict[str, Any]:
    """The shape a practitioner is shown: for a shielded record exactly the permitted keys, nothing else."""
    if row["shielded"]:
        return {key: jsonable(row[key]) for key in PRACTITIONER_FIELDS}
    return {key: jsonable(value) for key, value in row.items()}


@asynccontextmanager
async def as_practitioner(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A transaction under the practitioners' database role: only the redacting view and search are reachable."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL ROLE shielding_practitioner")
        yield conn


async def view_child(pool: asyncpg.Pool, uid: str) -> dict[str, Any] | None:
    """What a practitioner sees, read through the redacting view as the practitioners' role."""
    async with as_practitioner(pool) as conn:
        row = await conn.fetchrow("SELECT * FROM practitioner_children WHERE uid = $1", uid)
    return practitioner_record(dict(row)) if row else None


async def full_child(pool: asyncpg.Pool, uid: str) -> dict[str, Any] | None:
    """Every field, for break-glass only (the caller audits it)."""
    row = await pool.fetchrow(
        """SELECT uid, given_name, family_name, aliases, gender, date_of_birth, address, carers, school,
                  gp_practice, practitioners, (shield_request_id IS NOT NULL) AS shielded, shield_request_id
           FROM children WHERE uid = $1""",
        uid,
    )
    return jsonable_row(row) if row else None


class ChildSearch(BaseModel):
    """A practitioner's search: hidden fields (postcode, school) only ever match unshielded records."""

    given_name: str | None = None
    family_name: str | None = None
    date_of_birth: date | None = None
    gender: str | None = None
    postcode: str | None = None
    school: str | None = None
    limit: int = 50


async def search_children(pool: asyncpg.Pool, search: ChildSearch) -> list[dict[str, Any]]:
    async with as_practitioner(pool) as conn:
        rows = await conn.fetch(
            "SELECT * FROM search_children($1, $2, $3, $4, $5, $6, $7)",
            search.given_name,
            search.family_name,
            search.date_of_birth,
            search.gender,
            search.postcode,
            search.school,
            search.limit,
        )
    return [practitioner_record(dict(r)) for r in rows]


async def existing_children(pool: asyncpg.Pool, uids: Sequence[str]) -> set[str]:
    rows = await pool.fetch("SELECT uid FROM children WHERE uid = ANY($1::text[])", list(uids))
    return {r["uid"] for r in rows}
