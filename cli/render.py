"""How commands print: one JSON object with --json, else lines a person reads; instants in London time."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import typer

from shielding import deadlines
from shielding.domain import IntakeAcknowledgement, RequestStatus


def iso(value: datetime | None) -> str | None:
    """An instant as people read it here: London time with its UTC offset, to the second."""
    return deadlines.to_london(value).isoformat(timespec="seconds") if value else None


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def emit(as_json: bool, payload: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(payload, default=_json_default, sort_keys=False))
    else:
        for line in lines:
            typer.echo(line)


def acknowledgement(ack: IntakeAcknowledgement) -> tuple[dict[str, Any], list[str]]:
    payload = {
        "request_id": ack.request_id,
        "stage": ack.stage.value,
        "children": [c.model_dump(mode="json") for c in ack.children],
        "form_due_at": iso(ack.form_due_at),
        "review_7_day_at": iso(ack.review_7_day_at),
        "review_6_month_at": iso(ack.review_6_month_at),
        "message": ack.message,
    }
    lines = [f"request {ack.request_id}: {ack.stage.value}", ack.message]
    for c in ack.children:
        note = f" (already shielded under {c.existing_request_id})" if c.existing_request_id else ""
        lines.append(f"  child {c.uid}: {'shielded' if c.shielded else 'not shielded'}{note}")
    if ack.form_due_at:
        lines += [
            f"form due by:     {iso(ack.form_due_at)}",
            f"7-day review:    {iso(ack.review_7_day_at)}",
            f"6-month review:  {iso(ack.review_6_month_at)}",
        ]
    return payload, lines


_STATUS_INSTANTS = ("called_at", "shielded_at", "form_due_at", "form_received_at", "next_review_at", "review_due_since")


def request_status(st: RequestStatus) -> tuple[dict[str, Any], list[str]]:
    payload = st.model_dump(mode="json")
    for key in _STATUS_INSTANTS:
        payload[key] = iso(getattr(st, key))
    lines = [
        f"request {st.request_id}: {st.stage.value}",
        f"children:        {', '.join(st.children) or '-'}",
        f"shielded at:     {iso(st.shielded_at) or '-'}",
        f"form due by:     {iso(st.form_due_at) or '-'}"
        + (f" (received {iso(st.form_received_at)})" if st.form_received_at else ""),
        f"next review:     {iso(st.next_review_at) or '-'}"
        + (f" ({st.next_review_kind.value})" if st.next_review_kind else ""),
    ]
    if st.review_due_since:
        lines.append(f"review due since {iso(st.review_due_since)}; reminders sent: {st.reminders_sent}")
    for r in st.reviews:
        lines.append(
            f"  {r.kind.value} review: {r.decision.value if r.decision else '-'} by {r.actor} at {iso(r.decided_at)}"
        )
    if st.closed_reason:
        lines.append(f"closed: {st.closed_reason}")
    return payload, lines


def _identity(record: dict[str, Any]) -> list[str]:
    return [
        f"uid:            {record['uid']}",
        f"name:           {record['given_name']} {record['family_name']}",
        f"aliases:        {', '.join(record.get('aliases') or []) or '-'}",
        f"gender:         {record['gender']}",
        f"date of birth:  {record['date_of_birth']}",
    ]


def _carer(carer: dict[str, Any], *, with_phone: bool) -> str:
    about = [carer.get("relationship") or "-"]
    if with_phone and carer.get("phone"):
        about.append(str(carer["phone"]))
    return f"{carer.get('name', '')} ({', '.join(about)})"


def _details(record: dict[str, Any], *, with_phones: bool = False) -> list[str]:
    address = record.get("address") or {}
    carers = "; ".join(_carer(c, with_phone=with_phones) for c in record.get("carers") or [])
    return [
        f"address:        {', '.join(address.get('lines', []))} {address.get('postcode') or ''}".rstrip(),
        f"carers:         {carers or '-'}",
        f"school:         {record.get('school') or '-'}",
        f"GP practice:    {record.get('gp_practice') or '-'}",
    ]


def child_record(record: dict[str, Any]) -> list[str]:
    lines = _identity(record)
    if record.get("shielded"):
        lines.append("SHIELDED: other details are withheld. Contact the Integrated Working Team to reach this child.")
        return lines
    return lines + _details(record)


def break_glass_record(record: dict[str, Any]) -> list[str]:
    """The whole record, shown once by break-glass: a shielded child's hidden details are marked as such."""
    lines = _identity(record)
    details = _details(record, with_phones=True)
    practitioners = ", ".join(record.get("practitioners") or []) or "-"
    details.append(f"practitioners:  {practitioners}")
    if not record.get("shielded"):
        return [*lines, *details]
    return [
        *lines,
        "SHIELDED: the details below are hidden from everyone else; shown by break-glass (audited, managers alerted).",
        *(f"{line}   [break-glass]" for line in details),
    ]


def search_results(results: list[dict[str, Any]]) -> list[str]:
    lines = [f"{len(results)} found"]
    for r in results:
        lines.append(
            f"  {r['uid']}  {r['given_name']} {r['family_name']}  {r['date_of_birth']}  {r['gender']}"
            + ("  SHIELDED" if r["shielded"] else "")
        )
    return lines


def audit_lines(entries: list[dict[str, Any]]) -> list[str]:
    return [
        f"{e['at']}  {e['action']:<16} {e['actor']:<18} {e['request_id'] or '-':<16} "
        f"{e['child_uid'] or '':<16} {e['reason'] or ''}"
        for e in entries
    ] or ["no entries"]


def user_lines(users: list[dict[str, Any]]) -> list[str]:
    lines = []
    for u in users:
        how = [kind for kind, on in (("local", u.get("local")), ("single sign-on", u.get("single_sign_on"))) if on]
        state = "disabled" if u.get("disabled") else (", ".join(how) or "no sign-in")
        lines.append(f"{u['name']:<24} {', '.join(u.get('roles') or []) or '-':<32} {state}")
    return lines or ["no users"]
