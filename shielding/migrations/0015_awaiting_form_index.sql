-- depends: 0014_fuzzy_search
-- The "Written forms due" list, a page at a time: the open requests still waiting for their form, soonest deadline
-- first. Without this the count and each page read every request the service ever took (closed ones stay, for
-- the audit trail); with it they read only the few hundred open and waiting, already in the list's order.
CREATE INDEX shielding_requests_awaiting_form ON shielding_requests (form_due_at, request_id)
    WHERE closed_at IS NULL AND shielded_at IS NOT NULL AND form_due_at IS NOT NULL AND form_received_at IS NULL;
