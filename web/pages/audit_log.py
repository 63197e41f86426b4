"""The audit log: every entry on a request or on a child's record, and the check that it has not been changed.

    GET /audit?request=SR-...   the entries of a request (and of the requests recorded against it)
    GET /audit?child=UID        the entries of a child's record (including refused requests that named it)
    GET /audit/verify           every entry's hash and signature checked from the first, against the anchor file
                                outside the database, whose head it then extends (`store.verify_chain`)

The search is a GET (an address to come back to) because it carries only a request id or a child's record number,
which the service's addresses may hold. The page shows what happened, who did it, when and the reason recorded;
not the requestor's contact details or the hashes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Query, Request, Response

from shielding import store
from shielding.brokering import CONTACT_REQUEST_ID_PATTERN
from shielding.domain import REQUEST_ID_PATTERN, UID_PATTERN, AuditAction
from shielding.store import access_log
from shielding.store.access_log import AccessKind
from starter.identity import Session
from web.deps import PartsDep, reader
from web.pages.forms import Problems
from web.pages.rendering import render
from web.pages.routing import page_router
from web.pages.session import may

router = page_router()

AUDIT_PATH = "/audit"
ENTRIES_SHOWN = 1000
ACTION_LABELS = {
    AuditAction.RECEIVED: "Request taken",
    AuditAction.REFUSED: "Request refused",
    AuditAction.SHIELDED: "Record shielded",
    AuditAction.DUPLICATE: "Already shielded: request recorded against this one",
    AuditAction.FORM_RECEIVED: "Written form received",
    AuditAction.FORM_REFUSED: "Written form refused",
    AuditAction.LAPSED: "Lapsed: no form in time",
    AuditAction.REVIEW_DUE: "Review due",
    AuditAction.REMINDER: "Reminder: review overdue",
    AuditAction.APPROVED: "Review approved",
    AuditAction.UNSHIELDED: "Shielding ended",
    AuditAction.IMPORTED: "Record imported",
    AuditAction.VIEWED_OVERRIDE: "Break-glass: withheld details seen",
    AuditAction.UNAUTHORISED: "Refused: not allowed",
    AuditAction.SIGNED_IN: "Signed in",
    AuditAction.SIGN_IN_FAILED: "Sign-in failed",
    AuditAction.SIGNED_OUT: "Signed out",
    AuditAction.ROLE_GRANTED: "Role given",
    AuditAction.ROLE_REMOVED: "Role removed",
    AuditAction.PAYLOADS_DECODED: "Workflow data read in the Temporal Web UI",
    AuditAction.DOCUMENTS_REMOVED: "Supporting documents removed (retention)",
    AuditAction.CONTACT_ASKED: "Contact asked for (brokering)",
    AuditAction.CONTACT_REMINDER: "Reminder: contact request not taken",
    AuditAction.CONTACT_TAKEN: "Contact request taken",
    AuditAction.CONTACT_DETAILS_VIEWED: "Brokering: withheld details seen",
    AuditAction.CONTACT_CLOSED: "Contact request closed",
}
BY_REQUEST, BY_CHILD = "request", "child"


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    try:
        label = ACTION_LABELS.get(AuditAction(row["action"]), str(row["action"]))
    except ValueError:
        label = str(row["action"])
    return {
        "entry_id": row["entry_id"],
        "at": row["at"] if isinstance(row["at"], datetime) else datetime.fromisoformat(str(row["at"])),
        "action": label,
        "actor": row["actor"],
        "request_id": row.get("request_id"),
        "child_uid": row.get("child_uid"),
        "reason": row.get("reason") or "",
    }


def _search(request_id: str | None, child: str | None) -> tuple[str, str, Problems]:
    """Which log was asked for (`request` or `child`, and the id), or what to fix; ("", "") when nothing was."""
    problems = Problems()
    if request_id is not None:
        wanted = request_id.strip().upper()
        if not wanted:
            problems.add("request", "Enter a request id")
        elif not (REQUEST_ID_PATTERN.fullmatch(wanted) or CONTACT_REQUEST_ID_PATTERN.fullmatch(wanted)):
            problems.add(
                "request", "Enter a request id in the form SR- then 12 letters or numbers, like SR-CA2KWYSUB552"
            )
        return BY_REQUEST, wanted, problems
    if child is not None:
        wanted = child.strip()
        if not wanted:
            problems.add("child", "Enter the child's record number")
        elif not UID_PATTERN.fullmatch(wanted):
            problems.add("child", "Enter a record number using only letters, numbers and hyphens, like CP-1004-ZO")
        return BY_CHILD, wanted, problems
    return "", "", problems


def _verdict_text(message: str) -> str:
    return message[:1].upper() + message[1:] + "."


@router.get(AUDIT_PATH)
async def audit(
    request: Request,
    session: Annotated[Session, may("audit")],
    p: PartsDep,
    request_id: Annotated[str | None, Query(alias="request", max_length=100)] = None,
    child: Annotated[str | None, Query(max_length=100)] = None,
) -> Response:
    by, wanted, problems = _search(request_id, child)
    entries, found = None, []
    if wanted and not problems:
        found = await store.audit_entries(
            p.pool, request_id=wanted if by == BY_REQUEST else None, child_uid=wanted if by == BY_CHILD else None
        )
        entries = [_entry(row) for row in found[-ENTRIES_SHOWN:]]
        uids = [wanted] if by == BY_CHILD else [r["child_uid"] for r in found if r.get("child_uid")]
        request_id_read = wanted if by == BY_REQUEST else None
        await access_log.record(p.pool, reader(request, session), AccessKind.LIST, uids, request_id=request_id_read)
    return render(
        request,
        "audit.html",
        errors=problems,
        by=by,
        wanted=wanted,
        values={"request": (request_id or "")[:100], "child": (child or "")[:100] if request_id is None else ""},
        entries=entries,
        total=len(found) if entries is not None else 0,
        verdict=None,
        is_manager="manager" in session.roles,
    )


@router.get(AUDIT_PATH + "/verify")
async def verify(request: Request, session: Annotated[Session, may("audit")], p: PartsDep) -> Response:
    verdict = await store.verify_chain(p.pool)
    return render(
        request,
        "audit.html",
        by="",
        wanted="",
        values={"request": "", "child": ""},
        entries=None,
        total=0,
        verdict={
            "intact": verdict.intact,
            "text": _verdict_text(verdict.message),
            "anchored": verdict.anchored_entry,
        },
        is_manager="manager" in session.roles,
    )
