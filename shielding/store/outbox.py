"""The outbox as the relay sees it (shielding.delivery): what is waiting, who each message goes to, one delivery
row per recipient, and each message's status for the managers' Messages page.

Each recipient is sent a message exactly once: its delivery row is written (`attempted_at`, with our reference)
before the message is handed to the provider, and `sent_at` after; a delivery retried after a crash finds the
row and asks the provider by reference before sending again. Nothing here logs or returns an address except to
the sender that needs it and to the managers' page.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum

import asyncpg
from pydantic import BaseModel, Field

from shielding.domain import AuditAction
from shielding.store.audit import MessageKind, RecipientKind, append_audit

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE = re.compile(r"^\+?[0-9 ()-]{6,32}$")
OUTBOX_SHOWN = 200


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"


class Recipient(BaseModel):
    address: str
    channel: Channel


class Outgoing(BaseModel):
    """One queued message, as the sender needs it."""

    notification_id: int
    recipient_kind: str
    recipient: str
    request_id: str | None = None
    template: str = MessageKind.GENERIC.value
    subject: str
    body: str
    sent_at: datetime | None = None
    failed_at: datetime | None = None


class Delivery(BaseModel):
    notification_id: int
    recipient: str
    channel: Channel
    provider: str
    reference: str
    provider_id: str | None = None
    attempted_at: datetime
    sent_at: datetime | None = None
    not_possible: str | None = None


class MessageStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    NOT_POSSIBLE = "not possible"


class OutboxMessage(BaseModel):
    """A message as managers see it: status, reason, each recipient's delivery, subject and body."""

    notification_id: int
    created_at: datetime
    recipient_kind: str
    request_id: str | None = None
    template: str
    subject: str
    body: str
    status: MessageStatus
    dispatched_at: datetime | None = None
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    failure: str | None = None
    deliveries: list[Delivery] = Field(default_factory=list)

    def masked(self) -> OutboxMessage:
        """As shown to managers: each recipient's address masked, enough to tell them apart."""
        shown = [d.model_copy(update={"recipient": mask(d.recipient)}) for d in self.deliveries]
        return self.model_copy(update={"deliveries": shown})


def mask(address: str) -> str:
    """`r…@council.example` for an email address, `… 123` for a phone number."""
    if "@" in address:
        local, _, domain = address.rpartition("@")
        return f"{local[:1]}…@{domain}"
    digits = [c for c in address if c.isdigit()]
    return "… " + "".join(digits[-3:])


def channel_of(address: str) -> Channel | None:
    """An email address or a phone number (what a requestor or practitioner gave); None for anything else."""
    if EMAIL.fullmatch(address):
        return Channel.EMAIL
    if PHONE.fullmatch(address) and sum(c.isdigit() for c in address) >= 6:
        return Channel.SMS
    return None


# ----------------------------------------------------------------------------------------- the relay


async def undispatched(pool: asyncpg.Pool, *, limit: int = 500) -> list[int]:
    rows = await pool.fetch(
        """SELECT notification_id FROM notifications
           WHERE dispatched_at IS NULL AND sent_at IS NULL AND failed_at IS NULL
           ORDER BY notification_id LIMIT $1""",
        limit,
    )
    return [int(r["notification_id"]) for r in rows]


async def mark_dispatched(pool: asyncpg.Pool, notification_ids: list[int]) -> None:
    await pool.execute(
        "UPDATE notifications SET dispatched_at = now() WHERE notification_id = ANY($1::bigint[]) "
        "AND dispatched_at IS NULL",
        notification_ids,
    )


async def outgoing(conn: asyncpg.Connection | asyncpg.Pool, notification_id: int) -> Outgoing | None:
    row = await conn.fetchrow(
        """SELECT notification_id, recipient_kind, recipient, nullif(request_id, '') AS request_id, template,
                  subject, body, sent_at, failed_at
           FROM notifications WHERE notification_id = $1""",
        notification_id,
    )
    return Outgoing(**dict(row)) if row else None


async def staff_addresses(conn: asyncpg.Connection | asyncpg.Pool, role: str) -> list[str]:
    """The email of every enabled account holding `role` that has one."""
    rows = await conn.fetch(
        """SELECT DISTINCT a.email FROM accounts a JOIN user_roles r ON r.name = a.name
           WHERE r.role = $1 AND a.disabled_at IS NULL AND a.email IS NOT NULL ORDER BY a.email""",
        role,
    )
    return [str(r["email"]) for r in rows]


_GROUP_ROLES = {RecipientKind.REVIEWERS.value: "reviewer", RecipientKind.MANAGERS.value: "manager"}


async def recipients(conn: asyncpg.Connection | asyncpg.Pool, message: Outgoing) -> list[Recipient]:
    """Who a message goes to now: a group's staff with an email, or the one address a person gave."""
    role = _GROUP_ROLES.get(message.recipient_kind)
    if role is not None:
        return [Recipient(address=a, channel=Channel.EMAIL) for a in await staff_addresses(conn, role)]
    channel = channel_of(message.recipient.strip())
    return [Recipient(address=message.recipient.strip(), channel=channel)] if channel else []


async def deliveries(conn: asyncpg.Connection | asyncpg.Pool, notification_id: int) -> dict[str, Delivery]:
    rows = await conn.fetch(
        "SELECT * FROM notification_deliveries WHERE notification_id = $1 ORDER BY reference", notification_id
    )
    return {str(r["recipient"]): Delivery(**dict(r)) for r in rows}


async def begin_delivery(pool: asyncpg.Pool, notification_id: int, recipient: Recipient, provider: str) -> Delivery:
    """The recipient's delivery row, written now (before anything is sent) if there is none: `<id>-<n>`."""
    async with pool.acquire() as conn, conn.transaction():
        # One delivery workflow per message, but a timed-out attempt may still be running: take turns.
        await conn.execute("SELECT 1 FROM notifications WHERE notification_id = $1 FOR UPDATE", notification_id)
        row = await conn.fetchrow(
            "SELECT * FROM notification_deliveries WHERE notification_id = $1 AND recipient = $2",
            notification_id,
            recipient.address,
        )
        if row is None:
            n = await conn.fetchval(
                "SELECT count(*) + 1 FROM notification_deliveries WHERE notification_id = $1", notification_id
            )
            row = await conn.fetchrow(
                """INSERT INTO notification_deliveries (notification_id, recipient, channel, provider, reference)
                   VALUES ($1, $2, $3, $4, $5) RETURNING *""",
                notification_id,
                recipient.address,
                recipient.channel.value,
                provider,
                f"{notification_id}-{n}",
            )
    return Delivery(**dict(row))


async def record_sent(pool: asyncpg.Pool, delivery: Delivery, provider_id: str | None) -> None:
    await pool.execute(
        """UPDATE notification_deliveries SET sent_at = coalesce(sent_at, now()), provider_id = $3
           WHERE notification_id = $1 AND recipient = $2""",
        delivery.notification_id,
        delivery.recipient,
        provider_id,
    )


async def record_not_possible(pool: asyncpg.Pool, delivery: Delivery, reason: str) -> None:
    await pool.execute(
        "UPDATE notification_deliveries SET not_possible = $3 WHERE notification_id = $1 AND recipient = $2",
        delivery.notification_id,
        delivery.recipient,
        reason,
    )


async def finish(pool: asyncpg.Pool, notification_id: int) -> None:
    """Every recipient has been sent the message (or it cannot go to them by any channel there is)."""
    await pool.execute(
        "UPDATE notifications SET sent_at = now() WHERE notification_id = $1 AND sent_at IS NULL AND failed_at IS NULL",
        notification_id,
    )


async def mark_failed(pool: asyncpg.Pool, notification_id: int, reason: str) -> bool:
    """The message can never be delivered: the row says why and the audit log records it (once)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """UPDATE notifications SET failed_at = now(), failure = $2
               WHERE notification_id = $1 AND failed_at IS NULL AND sent_at IS NULL
               RETURNING nullif(request_id, '') AS request_id, template, recipient_kind""",
            notification_id,
            reason,
        )
        if row is None:
            return False
        await append_audit(
            conn,
            action=AuditAction.NOTIFICATION_FAILED,
            actor="system",
            request_id=row["request_id"],
            reason=reason,
            details={
                "notification_id": notification_id,
                "template": row["template"],
                "recipient_kind": row["recipient_kind"],
            },
        )
    return True


# ------------------------------------------------------------------------------------------ reading


def _status(row: asyncpg.Record, sent: list[Delivery]) -> MessageStatus:
    if row["failed_at"] is not None:
        return MessageStatus.FAILED
    if row["sent_at"] is None:
        return MessageStatus.QUEUED
    return MessageStatus.SENT if any(d.sent_at for d in sent) else MessageStatus.NOT_POSSIBLE


async def outbox(
    pool: asyncpg.Pool, *, failed_only: bool = False, request_id: str | None = None, limit: int = OUTBOX_SHOWN
) -> list[OutboxMessage]:
    """The newest `limit` messages (only those that failed, or one request's), with their deliveries."""
    rows = await pool.fetch(
        """SELECT notification_id, created_at, recipient_kind, nullif(request_id, '') AS request_id, template,
                  subject, body, dispatched_at, sent_at, failed_at, failure
           FROM notifications
           WHERE (NOT $1 OR failed_at IS NOT NULL) AND ($2::text IS NULL OR request_id = $2)
           ORDER BY notification_id DESC LIMIT $3""",
        failed_only,
        request_id,
        limit,
    )
    ids = [int(r["notification_id"]) for r in rows]
    found: dict[int, list[Delivery]] = {i: [] for i in ids}
    for d in await pool.fetch(
        "SELECT * FROM notification_deliveries WHERE notification_id = ANY($1::bigint[]) ORDER BY reference", ids
    ):
        found[int(d["notification_id"])].append(Delivery(**dict(d)))
    return [
        OutboxMessage(
            **dict(r), status=_status(r, found[int(r["notification_id"])]), deliveries=found[int(r["notification_id"])]
        )
        for r in rows
    ]


# ---------------------------------------------------------------------------------- staff addresses

UNCHANGED = object()


class NoSuchAccount(Exception):
    pass


async def set_staff_address(
    conn: asyncpg.Connection,
    name: str,
    *,
    by: str,
    email: str | None | object = UNCHANGED,
    phone: str | None | object = UNCHANGED,
) -> dict[str, str]:
    """Set (or clear, with None) a staff member's email and phone for messages, in the caller's transaction;
    audited by what changed ("set" / "cleared"), never the value. Returns that summary."""
    row = await conn.fetchrow("SELECT email, phone FROM accounts WHERE name = $1 FOR UPDATE", name)
    if row is None:
        raise NoSuchAccount(name)
    changed: dict[str, str] = {}
    for field, value in (("email", email), ("phone", phone)):
        if value is UNCHANGED or value == row[field]:
            continue
        await conn.execute(f"UPDATE accounts SET {field} = $2 WHERE name = $1", name, value)
        changed[field] = "cleared" if value is None else "set"
    if changed:
        await append_audit(
            conn, action=AuditAction.STAFF_ADDRESS_CHANGED, actor=by, request_id=None, details={"name": name, **changed}
        )
    return changed


async def staff_address(pool: asyncpg.Pool, name: str) -> tuple[str | None, str | None]:
    row = await pool.fetchrow("SELECT email, phone FROM accounts WHERE name = $1", name)
    return (row["email"], row["phone"]) if row else (None, None)
