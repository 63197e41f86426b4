"""Who may do what: managers add, remove and list staff; every grant and removal is audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from shielding.store import outbox
from starter import Refusal
from starter.identity import Session
from web.deps import PartsDep, SessionDep, allowed
from web.schemas import NewUser, StaffAddress

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", summary="Every account and its roles (managers)")
async def list_users(p: PartsDep, session: SessionDep) -> dict[str, list[dict[str, Any]]]:
    return {"users": await p.identity.users(session)}


@router.post("", status_code=status.HTTP_201_CREATED, summary="Add a user or grant a role (managers)")
async def add_user(body: NewUser, p: PartsDep, session: SessionDep) -> dict[str, str]:
    await p.identity.add_user(session, body.name, body.role, password=body.password, oidc_subject=body.oidc_subject)
    return {"name": body.name, "role": body.role}


@router.put("/{name}/address", summary="Set or clear a person's email and phone for messages (managers)")
async def set_address(
    name: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9._@-]{1,64}$")],
    body: StaffAddress,
    p: PartsDep,
    session: Annotated[Session, allowed("users")],
) -> dict[str, Any]:
    """Audited (`staff-address-changed`: which field was set or cleared, never its value)."""
    given = body.model_dump(exclude_unset=True)
    try:
        async with p.pool.acquire() as conn, conn.transaction():
            changed = await outbox.set_staff_address(conn, name, by=session.name, **given)
    except outbox.NoSuchAccount:
        raise Refusal(f"There is no account named {name}.") from None
    return {"name": name, "changed": changed}


@router.delete("/{name}", summary="Remove a role, or every role and the account's sign-in (managers)")
async def remove_user(
    name: str, p: PartsDep, session: SessionDep, role: Annotated[str | None, Query(max_length=40)] = None
) -> dict[str, str | None]:
    await p.identity.remove_user(session, name, role)
    return {"name": name, "removed": role or "all roles"}
