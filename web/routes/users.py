"""Who may do what: managers add, remove and list staff; every grant and removal is audited."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status

from web.deps import PartsDep, SessionDep
from web.schemas import NewUser

router = APIRouter(prefix="/api/users", tags=["users"])


@router.get("", summary="Every account and its roles (managers)")
async def list_users(p: PartsDep, session: SessionDep) -> dict[str, list[dict[str, Any]]]:
    return {"users": await p.identity.users(session)}


@router.post("", status_code=status.HTTP_201_CREATED, summary="Add a user or grant a role (managers)")
async def add_user(body: NewUser, p: PartsDep, session: SessionDep) -> dict[str, str]:
    await p.identity.add_user(session, body.name, body.role, password=body.password, oidc_subject=body.oidc_subject)
    return {"name": body.name, "role": body.role}


@router.delete("/{name}", summary="Remove a role, or every role and the account's sign-in (managers)")
async def remove_user(
    name: str, p: PartsDep, session: SessionDep, role: Annotated[str | None, Query(max_length=40)] = None
) -> dict[str, str | None]:
    await p.identity.remove_user(session, name, role)
    return {"name": name, "removed": role or "all roles"}
