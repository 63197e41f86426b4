"""Break-glass: a child protection officer sees a shielded record's hidden details, once, when a child is at risk.

    GET  /children/{uid}/break-glass   the warning first: what will happen, then the reason and a fresh proof of
                                       who they are (the password again; or, for single sign-on, a sign-in
                                       within the last few minutes, `/auth/oidc/login?fresh=1&next=...`)
    POST /children/{uid}/break-glass   checked, then the details as the answer to this POST, and nowhere else

The details are never at an address of their own: no GET shows them, so they cannot be bookmarked, shared,
reloaded from history or found in a log. The answer is `Cache-Control: no-store` like every page. Each warning
page can be used once: its form carries a token naming the person's latest break-glass view of this record when
it was issued (signed with their session's CSRF secret), and a POST after a newer view is refused, so going back
and resubmitting does not show the details again. Every view goes through `shielding.access.override_view`
(audited, managers alerted); a wrong password is refused and recorded against the record too.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import date, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request, Response

from shielding import access, store
from shielding.deadlines import long_date
from shielding.domain import UID_PATTERN
from shielding.store import access_log, accounts
from shielding.store import break_glass as break_glass_store
from shielding.store.access_log import AccessKind
from starter.identity import Session, SignInFailed, slow_down_after
from web.deps import PartsDep, reader
from web.pages.forms import Problems
from web.pages.rendering import GENDER_LABELS, render
from web.pages.routing import page_router
from web.pages.session import may

router = page_router()

PATH = "/children/{uid}/break-glass"
FRESH_SIGN_IN_PATH = "/auth/oidc/login"
FORM_MAX_AGE_SECONDS = 30 * 60
MAX_REASON, MAX_PASSWORD = 5000, 1000  # as the API allows (web.schemas.Override)

NO_REASON = "Enter why you need to see the hidden details now"
LONG_REASON = f"The reason must be {MAX_REASON:,} characters or fewer"
NO_PASSWORD = "Enter your password to confirm it is you"
NOT_FRESH = "Sign in again to confirm it is you, then fill in the reason"
FORM_USED = (
    "This warning page has already been used, or was open for too long. Nothing has been shown. "
    "Read the warning again and fill in the form below."
)
WRONG_PASSWORD_AUDIT = "break-glass refused: the password given again was not right"


def _born(value: Any) -> str:
    try:
        day = date.fromisoformat(str(value))
    except ValueError:
        return "Not recorded"
    return long_date(day)


def _address_text(address: Any) -> str:
    if not isinstance(address, dict):
        return ""
    return ", ".join([*(str(line) for line in address.get("lines") or []), str(address.get("postcode") or "")]).strip(
        ", "
    )


def identity(record: dict[str, Any]) -> dict[str, Any]:
    """What every role may see of a child (the Identity bar), from a record as the store gives it."""
    return {
        "uid": record["uid"],
        "name": f"{record.get('given_name', '')} {record.get('family_name', '')}".strip(),
        "aliases": [str(a) for a in record.get("aliases") or []],
        "date_of_birth": str(record.get("date_of_birth") or ""),
        "born": _born(record.get("date_of_birth")),
        "gender": GENDER_LABELS.get(str(record.get("gender")), "Not known"),
    }


def withheld(record: dict[str, Any]) -> dict[str, Any]:
    """Every field of the record (`store.full_child`), for the break-glass view only."""
    found = record.get("address")
    address: dict[str, Any] = found if isinstance(found, dict) else {}
    carers = [c for c in record.get("carers") or [] if isinstance(c, dict)]
    return {
        **identity(record),
        "address_lines": [str(line) for line in address.get("lines") or []],
        "postcode": str(address.get("postcode") or ""),
        "carers": [
            {
                "name": str(c.get("name") or ""),
                "relationship": str(c.get("relationship") or ""),
                "phone": str(c.get("phone") or ""),
                "address": _address_text(c.get("address")),
            }
            for c in carers
        ],
        "school": str(record.get("school") or ""),
        "gp_practice": str(record.get("gp_practice") or ""),
        "practitioners": [str(p) for p in record.get("practitioners") or []],
    }


def _form_token(session: Session, uid: str, last_view: int, issued_at: int) -> str:
    message = f"break-glass|{uid}|{last_view}|{issued_at}".encode()
    mac = hmac.new(session.csrf_token.encode(), message, hashlib.sha256).hexdigest()
    return f"{last_view}.{issued_at}.{mac}"


def _token_view(session: Session, uid: str, token: str) -> int | None:
    """The latest view the token was issued after, if it is this session's, for this record, and recent."""
    last_view, _, rest = token.partition(".")
    issued_at, _, _ = rest.partition(".")
    if not (last_view.isdigit() and issued_at.isdigit() and len(token) < 200):
        return None
    expected = _form_token(session, uid, int(last_view), int(issued_at))
    if not hmac.compare_digest(expected.encode(), token.encode()):
        return None
    if not 0 <= time.time() - int(issued_at) <= FORM_MAX_AGE_SECONDS:
        return None
    return int(last_view)


def _fresh_sign_in_href(uid: str) -> str:
    return f"{FRESH_SIGN_IN_PATH}?{urlencode({'fresh': '1', 'next': PATH.format(uid=uid)})}"


def _is_fresh(p: PartsDep, session: Session) -> bool:
    return session.fresh(timedelta(minutes=p.settings.fresh_auth_minutes))


async def _child(request: Request, p: PartsDep, uid: str) -> tuple[dict[str, Any] | None, Response | None]:
    """The record as everyone sees it (identity only when shielded), or the page to show instead."""
    record = await store.view_child(p.pool, uid) if UID_PATTERN.fullmatch(uid) else None
    if record is None:
        return None, render(
            request,
            "problem.html",
            status_code=404,
            heading="There is no such child",
            paragraphs=[f"No child in the directory has the identifier {uid[:64]}. Check it and try again."],
        )
    return record, None


async def _warning(
    request: Request,
    p: PartsDep,
    session: Session,
    record: dict[str, Any],
    *,
    errors: Problems | None = None,
    reason: str = "",
) -> Response:
    uid = record["uid"]
    # The warning names the child (what every role may see of a shielded record): a read like any other.
    await access_log.record(p.pool, reader(request, session), AccessKind.VIEW, [uid], details={"page": "break-glass"})
    needs_password = session.auth_method == "password"
    token = _form_token(session, uid, await break_glass_store.last_view(p.pool, session.name, uid), int(time.time()))
    return render(
        request,
        "break_glass_warning.html",
        errors=errors or Problems(),
        child=identity(record),
        needs_password=needs_password,
        signed_in_recently=needs_password or _is_fresh(p, session),
        fresh_sign_in_href=_fresh_sign_in_href(uid),
        fresh_minutes=f"{p.settings.fresh_auth_minutes:g}",
        form_token=token,
        values={"reason": reason},
        action=PATH.format(uid=uid),
    )


@router.get(PATH)
async def warning(request: Request, uid: str, session: Annotated[Session, may("override")], p: PartsDep) -> Response:
    record, page = await _child(request, p, uid)
    if page is not None:
        return page
    assert record is not None
    if not record["shielded"]:
        return render(request, "break_glass_not_shielded.html", child=identity(record))
    return await _warning(request, p, session, record)


async def _prove_again(p: PartsDep, session: Session, uid: str, password: str) -> str | None:
    """The password again (local accounts), slowed after repeated failures like sign-in; None when it is right."""
    await asyncio.sleep(slow_down_after(await accounts.recent_sign_in_failures(p.pool, session.name)))
    try:
        await p.identity.reauthenticate(session, password)
    except SignInFailed as err:
        await break_glass_store.record_refusal(p.pool, session.name, uid, WRONG_PASSWORD_AUDIT)
        return str(err)
    return None


@router.post(PATH)
async def view(
    request: Request,
    uid: str,
    session: Annotated[Session, may("override")],
    p: PartsDep,
    reason: Annotated[str, Form(max_length=MAX_REASON * 2)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD * 2)] = "",
    form_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    record, page = await _child(request, p, uid)
    if page is not None:
        return page
    assert record is not None
    if not record["shielded"]:
        return render(request, "break_glass_not_shielded.html", child=identity(record))
    reason = reason.strip()
    problems = Problems()
    issued_after = _token_view(session, uid, form_token)
    if issued_after is None or issued_after != await break_glass_store.last_view(p.pool, session.name, uid):
        problems.add("reason", FORM_USED)
        return await _warning(request, p, session, record, errors=problems, reason=reason)
    if not reason:
        problems.add("reason", NO_REASON)
    elif len(reason) > MAX_REASON:
        problems.add("reason", LONG_REASON)
    if session.auth_method == "password":
        if not password:
            problems.add("password", NO_PASSWORD)
        elif len(password) > MAX_PASSWORD or "\x00" in password:
            problems.add("password", "Re-authentication failed: the password is not right.")
        elif not problems:
            wrong = await _prove_again(p, session, uid, password)
            if wrong is not None:
                problems.add("password", wrong)
    elif not _is_fresh(p, session):
        problems.add("sign-in-again", NOT_FRESH)
    if problems:
        return await _warning(request, p, session, record, errors=problems, reason=reason)

    async with break_glass_store.one_view_at_a_time(p.pool, session.name, uid) as conn:
        if await break_glass_store.last_view(conn, session.name, uid) != issued_after:
            problems.add("reason", FORM_USED)
            shown = None
        else:
            shown = await access.override_view(p.pool, session.name, uid, reason)
    if shown is None:
        problems.add("reason", FORM_USED)
        return await _warning(request, p, session, record, errors=problems, reason=reason)
    await access_log.record(p.pool, reader(request, session), AccessKind.BREAK_GLASS, [uid])
    return render(
        request,
        "break_glass_view.html",
        child=withheld(shown),
        reason=reason,
    )
