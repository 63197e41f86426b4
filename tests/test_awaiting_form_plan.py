"""The "Written forms due" list reads only the open requests waiting for their form, through its partial index,
however many closed requests the service has kept (they stay, for the audit trail)."""

from __future__ import annotations

import json

from shielding.embedded_postgres import EmbeddedPostgres
from shielding.store import queues
from tests.helpers.relay import fresh_database

CLOSED, WAITING = 200_000, 300


def _nodes(plan: dict) -> list[dict]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def test_the_forms_due_list_uses_its_index_not_a_scan_of_every_request(pg_server: EmbeddedPostgres) -> None:
    async with fresh_database(pg_server, "awaiting") as db:
        await db.pool.execute(
            """INSERT INTO shielding_requests (request_id, stage, criteria, reason, requestor, called_at,
                                               received_by, shielded_at, form_due_at, form_received_at, closed_at)
               SELECT 'SR-' || lpad(upper(to_hex(n)), 12, '0'), 'closed', '{}', 'x', '{}', now(), 'ivy', now(),
                      now() + make_interval(hours => n % 200),
                      CASE WHEN n > $2 AND n % 2 = 0 THEN now() END,
                      CASE WHEN n > $2 THEN now() END
               FROM generate_series(1, $1::int + $2::int) AS n""",
            CLOSED,
            WAITING,
        )
        await db.pool.execute("ANALYZE shielding_requests")
        for sql, args in ((queues.AWAITING_FORM_PAGE, (queues.PAGE_SIZE, 0)), (queues.AWAITING_FORM_COUNT, ())):
            (plan,) = json.loads(await db.pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))
            nodes = _nodes(plan["Plan"])
            scans = [n["Node Type"] for n in nodes if n.get("Relation Name") == "shielding_requests"]
            assert "Seq Scan" not in scans, (sql, scans)
            assert any(n.get("Index Name") == "shielding_requests_awaiting_form" for n in nodes), (sql, scans)
        page = await queues.awaiting_form(db.pool)
        assert page.total == WAITING and len(page.items) == queues.PAGE_SIZE
