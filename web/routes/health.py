"""Health for the compose file, load balancers and operations staff.

GET /healthz   alive: the process serves requests (a restart is the cure when it does not)
GET /readyz    ready: the database and Temporal answer (send it no traffic until they do)
"""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from web.deps import PartsDep

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="200 while the service process answers")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "alive"})


@router.get("/readyz", summary="200 when the database and the workflow service answer; 503 names which does not")
async def readyz(p: PartsDep) -> JSONResponse:
    problems = []
    try:
        await p.pool.fetchval("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure means not ready
        problems.append("database")
    try:
        await p.client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=timedelta(seconds=3))
    except Exception:  # noqa: BLE001
        problems.append("temporal")
    return JSONResponse(
        {"status": "ok" if not problems else "unavailable", "failing": problems},
        status_code=200 if not problems else 503,
    )
