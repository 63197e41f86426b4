"""The child directory: importing records, matching identities, and the practitioners' redacted read path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import date
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, Field

from shielding import messages
from shielding.domain import AuditAction, ChildRecord
from shielding.store.audit import MessageKind, RecipientKind, append_audit, notify
from shielding.store.db import jsonable, jsonable_row, once

PRACTITIONER_FIELDS = ("uid", "given_name", "family_name", "aliases", "gender", "date_of_birth", "shielded")
HIDDEN_FIELDS = ("address", "carers", "school", "gp_practice", "practitioners")
# A search answers at most a page, never a total: more than a page asks for a narrower search.
SEARCH_PAGE = 20
# A search that forgives spelling answers a page of 50, ranked with a score, best first (as NHS PDS does).
FUZZY_PAGE = 50
# How far either side of the date of birth given a forgiving search looks (the migration refuses more).
MAX_DOB_TOLERANCE_DAYS = 31
# Records sharing an address or a carer listed at intake (a request names at most 50 children).
MAX_RELATED = 50


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
        link_keys_before = await _link_keys(conn, [r.uid for r in records])
        unchanged = 0
        for record in records:
            before = await conn.fetchrow(
                f"SELECT {', '.join(RECORD_FIELDS)} FROM children WHERE uid = $1 FOR UPDATE", record.uid
            )
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
            unchanged += not await _audit_import(conn, record, before, actor=actor)
            request_id = await _shielded_identity_match(conn, record)
            if request_id is not None:
                await _link_duplicate_record(conn, record.uid, request_id, actor=actor)
                linked.append(record.uid)
        await _flag_shared_details(conn, link_keys_before, actor=actor)
        await append_audit(
            conn,
            action=AuditAction.IMPORTED,
            actor=actor,
            request_id=None,
            reason=f"import of {len(records)} records: {created} new, {updated - unchanged} changed, "
            f"{unchanged} unchanged",
            details={
                "records": len(records),
                "created": created,
                "changed": updated - unchanged,
                "unchanged": unchanged,
            },
        )
    return ImportResult(imported=len(records), created=created, updated=updated, linked_duplicates=linked)


# Every field of a directory record, in `_record_args` order after the uid: what an import entry names.
RECORD_FIELDS = (
    "given_name",
    "family_name",
    "aliases",
    "gender",
    "date_of_birth",
    "address",
    "carers",
    "school",
    "gp_practice",
    "practitioners",
)


async def _audit_import(
    conn: asyncpg.Connection, record: ChildRecord, before: asyncpg.Record | None, *, actor: str
) -> bool:
    """One entry per record created or changed, naming the fields that changed and never their values (a
    shielded child's address must not reach the audit text). False when nothing changed (no entry)."""
    after = dict(zip(RECORD_FIELDS, _record_args(record)[1:], strict=True))
    if before is None:
        changed, reason = list(RECORD_FIELDS), "record created by import"
    else:
        changed = [f for f in RECORD_FIELDS if _comparable(before[f]) != _comparable(after[f])]
        if not changed:
            return False
        reason = "record changed by import: " + ", ".join(changed)
    await append_audit(
        conn,
        action=AuditAction.IMPORTED,
        actor=actor,
        request_id=None,
        child_uid=record.uid,
        reason=reason,
        details={"created": before is None, "changed": changed},
    )
    return True


def _comparable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


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
        template=MessageKind.DUPLICATE_RECORD,
    )


async def _link_keys(conn: asyncpg.Connection, uids: list[str]) -> dict[str, set[str]]:
    """Each record's address and carer keys (`child_links`, kept by a trigger), as "kind:key"."""
    rows = await conn.fetch("SELECT uid, kind || ':' || key AS key FROM child_links WHERE uid = ANY($1::text[])", uids)
    keys: dict[str, set[str]] = {uid: set() for uid in uids}
    for row in rows:
        keys[row["uid"]].add(row["key"])
    return keys


async def _flag_shared_details(conn: asyncpg.Connection, before: dict[str, set[str]], *, actor: str) -> None:
    """Tell the reviewers of a shielded record that an import brought another record to its address or carer.

    Both ways: an unshielded record moved to a shielded record's address or carer, and a shielded record moved to
    where unshielded records are. Only keys the imported record did not have before count, so importing the same
    file again flags nothing twice. The import's answer does not say it (no probe of where a shielded child lives).
    """
    rows = await conn.fetch(
        """SELECT DISTINCT CASE WHEN me.shield_request_id IS NULL THEN me.uid ELSE o.uid END AS flagged_uid,
                  coalesce(me.shield_request_id, o.shield_request_id) AS request_id,
                  mine.uid AS imported_uid, mine.kind || ':' || mine.key AS key, mine.kind AS kind
           FROM child_links mine
           JOIN child_links other ON other.kind = mine.kind AND other.key = mine.key AND other.uid <> mine.uid
           JOIN children me ON me.uid = mine.uid
           JOIN children o ON o.uid = other.uid
           WHERE mine.uid = ANY($1::text[]) AND (me.shield_request_id IS NULL) <> (o.shield_request_id IS NULL)
           ORDER BY 2, 1""",
        list(before),
    )
    flagged: dict[tuple[str, str], set[str]] = {}
    for row in rows:
        if row["key"] not in before.get(row["imported_uid"], set()):
            flagged.setdefault((row["request_id"], row["flagged_uid"]), set()).add(row["kind"])
    group = RecipientKind.REVIEWERS.value
    for (request_id, uid), kinds in flagged.items():
        await append_audit(
            conn,
            action=AuditAction.SHARED_DETAILS_FLAGGED,
            actor=actor,
            request_id=request_id,
            child_uid=uid,
            reason=messages.SHARED_DETAILS_FLAGGED_AUDIT,
            details={"shares": sorted(kinds)},
        )
        await notify(
            conn,
            recipient_kind=group,
            recipient=group,
            request_id=request_id,
            subject=messages.shared_details_subject(request_id),
            body=messages.shared_details_body(uid, request_id),
            template=MessageKind.SHARED_DETAILS,
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
        row = await conn.fetchrow("SELECT * FROM practitioner_child($1)", uid)
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
    """A directory search: a name (given, family or an alias) and a date of birth, always, so it never lists
    everyone nor counts the shielded; gender, postcode and school only narrow it, and a hidden field (postcode,
    school) only ever matches a record whose details are shown."""

    given_name: str | None = None
    family_name: str | None = None
    date_of_birth: date | None = None
    gender: str | None = None
    postcode: str | None = None
    school: str | None = None
    limit: int = SEARCH_PAGE
    # Forgive spelling: names score the candidates a date of birth (within the tolerance) yields.
    fuzzy: bool = False
    dob_tolerance_days: int = Field(default=0, ge=0, le=MAX_DOB_TOLERANCE_DAYS)

    def names_a_child(self) -> bool:
        names = ((self.given_name or "").strip(), (self.family_name or "").strip())
        return self.date_of_birth is not None and any(names)


class SearchPage(BaseModel):
    """At most a page of results, best first; `more` when other records match too (a narrower search finds
    them). Never a total."""

    results: list[dict[str, Any]]
    more: bool = False


async def search_page(pool: asyncpg.Pool, search: ChildSearch) -> SearchPage:
    if not search.names_a_child():
        raise ValueError("a directory search names a name and a date of birth")
    if search.fuzzy:
        return await _fuzzy_search_page(pool, search)
    if search.dob_tolerance_days:
        raise ValueError("a date-of-birth tolerance is for a search that forgives spelling")
    page = max(1, min(search.limit, SEARCH_PAGE))
    async with as_practitioner(pool) as conn:
        rows = await conn.fetch(
            "SELECT * FROM search_children($1, $2, $3, $4, $5, $6, $7)",
            search.given_name,
            search.family_name,
            search.date_of_birth,
            search.gender,
            search.postcode,
            search.school,
            page + 1,
        )
    return SearchPage(results=[practitioner_record(dict(r)) for r in rows[:page]], more=len(rows) > page)


async def _fuzzy_search_page(pool: asyncpg.Pool, search: ChildSearch) -> SearchPage:
    """Ranked, best first, each result with its `score` (0 to 1, from names and date of birth only: the same
    whether or not the child is shielded)."""
    page = max(1, min(search.limit, FUZZY_PAGE)) if "limit" in search.model_fields_set else FUZZY_PAGE
    async with as_practitioner(pool) as conn:
        rows = await conn.fetch(
            "SELECT * FROM search_children_fuzzy($1, $2, $3, $4, $5, $6, $7, $8)",
            search.given_name,
            search.family_name,
            search.date_of_birth,
            search.dob_tolerance_days,
            search.gender,
            search.postcode,
            search.school,
            page + 1,
        )
    results = []
    for row in rows[:page]:
        fields = dict(row)
        score = fields.pop("score")
        results.append({**practitioner_record(fields), "score": round(float(score), 3)})
    return SearchPage(results=results, more=len(rows) > page)


async def search_children(pool: asyncpg.Pool, search: ChildSearch) -> list[dict[str, Any]]:
    return (await search_page(pool, search)).results


# ------------------------------------------------------------------------------------------ rate of reads


class ReadsLimited(Exception):
    """This person has read the directory as often as one window allows; the message says so in one sentence."""


async def count_directory_read(pool: asyncpg.Pool, name: str, *, limit: int, window_seconds: int) -> None:
    """Count one search or view by uid for `name` (in PostgreSQL, so every service process shares the count);
    ReadsLimited past the limit. The first refusal in a window is audited (one entry, however many follow)."""
    async with pool.acquire() as conn, conn.transaction():
        reads = await conn.fetchval(
            """INSERT INTO directory_read_counts (name, window_start)
               VALUES ($1, date_bin(make_interval(secs => $2), now(), timestamptz '2000-01-01 00:00:00+00'))
               ON CONFLICT (name, window_start) DO UPDATE SET reads = directory_read_counts.reads + 1
               RETURNING reads""",
            name,
            float(window_seconds),
        )
        if reads == 1:
            await conn.execute(
                """DELETE FROM directory_read_counts
                   WHERE name = $1 AND window_start < now() - make_interval(secs => $2)""",
                name,
                float(window_seconds),
            )
        if reads <= limit:
            return
        message = messages.reads_limited(limit, window_seconds)
        if reads == limit + 1:
            await append_audit(
                conn,
                action=AuditAction.READS_LIMITED,
                actor=name,
                request_id=None,
                reason=message,
                details={"limit": limit, "window_seconds": window_seconds},
            )
    raise ReadsLimited(message)


# -------------------------------------------------------------------------- records sharing details


class RelatedRecord(BaseModel):
    """A record that shares an address or a carer with a child in a request (identity fields only)."""

    uid: str
    given_name: str
    family_name: str
    date_of_birth: date
    shares: list[Literal["address", "carer"]]

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}"


async def related_records(pool: asyncpg.Pool, uids: Sequence[str]) -> list[RelatedRecord]:
    """Unshielded records, not among `uids`, that share an address or a carer with one of them."""
    rows = await pool.fetch(
        """SELECT c.uid, c.given_name, c.family_name, c.date_of_birth, array_agg(DISTINCT other.kind) AS shares
           FROM child_links mine
           JOIN child_links other ON other.kind = mine.kind AND other.key = mine.key
           JOIN children c ON c.uid = other.uid
           WHERE mine.uid = ANY($1::text[]) AND NOT (other.uid = ANY($1::text[])) AND c.shield_request_id IS NULL
           GROUP BY c.uid
           ORDER BY lower(c.family_name), lower(c.given_name), c.date_of_birth, c.uid
           LIMIT $2""",
        list(uids),
        MAX_RELATED,
    )
    return [RelatedRecord(**{**dict(r), "shares": sorted(r["shares"])}) for r in rows]


class RelatedDecision(BaseModel):
    """An intake officer's decision about one related record: added to the request, or not and why."""

    uid: str
    decision: Literal["added", "not-added"]
    reason: str | None = None


class _Recorded(BaseModel):
    entries: int


async def record_related_decisions(
    pool: asyncpg.Pool, request_id: str, decisions: Sequence[RelatedDecision], *, actor: str
) -> None:
    """One audit entry per related record, the reason kept there (never logged); written once per request."""
    if not decisions:
        return

    async def write(conn: asyncpg.Connection) -> _Recorded:
        for decision in decisions:
            added = decision.decision == "added"
            await append_audit(
                conn,
                action=AuditAction.RELATED_RECORD_DECIDED,
                actor=actor,
                request_id=request_id,
                child_uid=decision.uid,
                reason=messages.RELATED_ADDED_AUDIT
                if added
                else messages.related_not_added_audit(decision.reason or ""),
                details={"decision": decision.decision},
            )
        return _Recorded(entries=len(decisions))

    await once(pool, f"{request_id}:related-decisions", _Recorded, write)


async def existing_children(pool: asyncpg.Pool, uids: Sequence[str]) -> set[str]:
    rows = await pool.fetch("SELECT uid FROM children WHERE uid = ANY($1::text[])", list(uids))
    return {r["uid"] for r in rows}
