"""PostgreSQL: the directory, shielding requests, form documents, the audit log and the outbox.

One module a concern: `db` (pool, migrations, run-once), `directory` (import, identity match, the redacted
read path), `requests` (shield, lift, audited steps), `documents` (staged forms), `audit` (log, chain, outbox).
Every state change and its audit entry are written in one transaction. The names below are the store's
public surface; callers write `store.shield_request(...)`.
"""

from shielding.store.audit import (
    ChainVerdict,
    MessageKind,
    RecipientKind,
    append_audit,
    audit_entries,
    notifications,
    notify,
    record_refusal,
    verify_chain,
)
from shielding.store.db import create_pool, migrate, migrate_async, once, pool_for
from shielding.store.directory import (
    HIDDEN_FIELDS,
    PRACTITIONER_FIELDS,
    ChildSearch,
    ImportResult,
    existing_children,
    full_child,
    import_children,
    practitioner_record,
    search_children,
    view_child,
)
from shielding.store.documents import accept_form, discard_staged_documents, refuse_form, stage_documents
from shielding.store.requests import (
    ClosedRequest,
    closed_request,
    lift_shield,
    received_by,
    record_step,
    request_exists,
    send_requestor_message,
    shield_request,
)

__all__ = [
    "HIDDEN_FIELDS",
    "PRACTITIONER_FIELDS",
    "ChainVerdict",
    "ChildSearch",
    "ClosedRequest",
    "ImportResult",
    "MessageKind",
    "RecipientKind",
    "accept_form",
    "append_audit",
    "audit_entries",
    "closed_request",
    "create_pool",
    "discard_staged_documents",
    "existing_children",
    "full_child",
    "import_children",
    "lift_shield",
    "migrate",
    "migrate_async",
    "notifications",
    "notify",
    "once",
    "pool_for",
    "practitioner_record",
    "received_by",
    "record_refusal",
    "record_step",
    "refuse_form",
    "request_exists",
    "search_children",
    "send_requestor_message",
    "shield_request",
    "stage_documents",
    "verify_chain",
    "view_child",
]
