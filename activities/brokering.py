"""Activities of ContactBrokeringWorkflow: remind the managers, and read where a contact request is.

Both take and return ids, counts and flags only; what the request holds stays in PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from temporalio import activity

from shielding.brokering import ContactState, ReminderInput, ReminderResult, StateInput
from shielding.log import get_logger
from shielding.store import brokering

log = get_logger(__name__)


class BrokeringActivities:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn
    async def remind_managers(self, params: ReminderInput) -> ReminderResult:
        result = await brokering.remind_managers(
            self._pool, params.contact_request_id, params.number, params.operation_key
        )
        # Fields on the log's allow-list: the contact request's id under request_id, the reminder's number.
        log.info(
            "contact reminder",
            request_id=params.contact_request_id,
            count=params.number,
            status="sent" if result.sent else "not-sent",
        )
        return result

    @activity.defn
    async def contact_request_state(self, params: StateInput) -> ContactState:
        return await brokering.contact_state(self._pool, params.contact_request_id)

    def all(self) -> list[Any]:
        return [self.remind_managers, self.contact_request_state]
