"""The service layer every front end calls: intake validation, form documents and `ShieldingService`."""

from starter.documents import Document, check_document, read_documents
from starter.errors import IntakeTimeout, Refusal
from starter.service import ShieldingService, check_request_id, new_request_id
from starter.validation import CLOCK_SKEW, IntakeDraft, parse_instant, validate_intake

__all__ = [
    "CLOCK_SKEW",
    "Document",
    "IntakeDraft",
    "IntakeTimeout",
    "Refusal",
    "ShieldingService",
    "check_document",
    "check_request_id",
    "new_request_id",
    "parse_instant",
    "read_documents",
    "validate_intake",
]
