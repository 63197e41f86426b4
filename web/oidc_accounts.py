"""Who a single sign-on is here: the account linked to the provider's subject, and the group claim's roles.

Accounts are found by the token's subject (`IdentityService.sign_in_with_subject`). Roles mapped from the group
claim (`SHIELDING_OIDC_GROUP_ROLES="group=role,..."`) are granted in the users table at each sign-in by
"single-sign-on" (audited), and those it granted earlier are removed when the claim no longer maps them. A
subject with no account but a mapped group gets an account; with neither it is refused (audited).
"""

from __future__ import annotations

import hashlib

import asyncpg

from shielding import access, store
from shielding.domain import AuditAction
from shielding.log import get_logger
from shielding.store import accounts, outbox
from starter.identity import IdentityService, IssuedSession, SignInFailed
from web.oidc import ACCOUNT_NAME, SSO_ACTOR, OidcClient, VerifiedIdentity

log = get_logger(__name__)


async def sign_in(
    pool: asyncpg.Pool, identity: IdentityService, oidc: OidcClient, who: VerifiedIdentity, *, kind: str
) -> IssuedSession:
    """A new session for the account linked to the subject, after the group claim's roles are applied."""
    await apply_group_roles(pool, oidc, who)
    await fill_email(pool, who)
    return await identity.sign_in_with_subject(
        who.subject, kind=kind, group_roles=set(), authenticated_at=who.auth_time
    )


async def linked_account(pool: asyncpg.Pool, oidc: OidcClient, who: VerifiedIdentity) -> str:
    """The (enabled) account linked to the subject, after the group claim's roles are applied; refused if none."""
    await apply_group_roles(pool, oidc, who)
    await fill_email(pool, who)
    account = await accounts.account_by_subject(pool, who.subject)
    if account is None or account.disabled:
        await audit_sign_in(pool, AuditAction.SIGN_IN_FAILED, SSO_ACTOR, "no account is linked to this subject")
        raise SignInFailed("Sign-in failed: your account is not set up for this service; ask a manager.")
    return account.name


async def apply_group_roles(pool: asyncpg.Pool, oidc: OidcClient, who: VerifiedIdentity) -> None:
    """Grant the roles the group claim maps (creating the account of a new subject), and remove those granted
    earlier by single sign-on that it no longer maps. Nothing changes when no mapping is configured, the claim was
    not sent, or the account was disabled (a manager's decision stands)."""
    if not oidc.group_roles or who.groups is None:
        return
    mapped = oidc.roles_for(who.groups)
    async with pool.acquire() as conn, conn.transaction():
        # One sign-in of a subject at a time, across processes, so two cannot create its account twice.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('oidc-subject:' || $1, 0))", who.subject)
        account = await accounts.account_by_subject(conn, who.subject)
        if account is None:
            if not mapped:
                return
            name = await _free_account_name(conn, who)
            await accounts.save_account(conn, name, created_by=SSO_ACTOR, password_hash=None, oidc_subject=who.subject)
        elif account.disabled:
            return
        else:
            name = account.name
        for role in sorted(mapped):
            try:
                async with conn.transaction():  # a savepoint: a role needing approval leaves the rest
                    await access.grant_role(conn, name, role, by=SSO_ACTOR)
            except access.NeedsSecondApproval as ask:
                # A group mapping cannot stand in for a manager's approval: asked for, not granted.
                await access.record_approval_request(conn, ask)
                log.warning("oidc role needs approval", actor=name, role=role)
        granted_before = await conn.fetch(
            "SELECT role FROM user_roles WHERE name = $1 AND added_by = $2", name, SSO_ACTOR
        )
        for row in granted_before:
            if row["role"] in mapped:
                continue
            try:
                async with conn.transaction():  # a savepoint: a refused removal leaves the rest
                    await access.remove_role(conn, name, row["role"], by=SSO_ACTOR)
            except (access.AccessDenied, access.InvalidChange) as err:
                log.warning("oidc role kept", actor=name, role=row["role"], reason=type(err).__name__)


async def fill_email(pool: asyncpg.Pool, who: VerifiedIdentity) -> None:
    """The token's email claim becomes the account's address for messages (shielding.delivery) when it has none
    yet: a manager's choice stands. Audited as a change by single sign-on (never the address)."""
    if not who.email or outbox.channel_of(who.email) != outbox.Channel.EMAIL or len(who.email) > 254:
        return
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT name FROM accounts WHERE oidc_subject = $1 AND email IS NULL AND disabled_at IS NULL", who.subject
        )
        if row is not None:
            await outbox.set_staff_address(conn, str(row["name"]), by=SSO_ACTOR, email=who.email)


async def _free_account_name(conn: asyncpg.Connection, who: VerifiedIdentity) -> str:
    """A name for a new single sign-on account: the provider's user name or email if free, else one from the
    subject (never an existing account's: that would hand it to this subject)."""
    digest = hashlib.sha256(who.subject.encode()).hexdigest()
    candidates = [who.preferred_username, who.email, f"sso-{digest[:16]}", f"sso-{digest[:40]}"]
    for name in candidates:
        if name and ACCOUNT_NAME.fullmatch(name) and await accounts.account(conn, name) is None:
            return name
    raise SignInFailed("Sign-in failed: no account name is free for you here; ask a manager.")


async def audit_sign_in(pool: asyncpg.Pool, action: AuditAction, actor: str, reason: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await store.append_audit(conn, action=action, actor=actor, request_id=None, reason=reason)
