"""The one structlog configuration: JSON lines on stderr, context variables bound per request.

Log events carry identifiers (request id, child uid, stage) and never child details or reasons; the
`redact_child_details` processor drops any key that names such a field, in case a caller forgets.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values must never reach a log line, whatever the caller passes.
FORBIDDEN_KEYS = frozenset(
    {
        "address",
        "postcode",
        "carers",
        "carer",
        "school",
        "gp_practice",
        "practitioners",
        "reason",
        "other_description",
        "requestor",
        "given_name",
        "family_name",
        "aliases",
        "date_of_birth",
        "phone",
        "email",
        "name",
        "content",
    }
)


def redact_child_details(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        if key in FORBIDDEN_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


_configured = False


def configure_logging(level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(stream=sys.stderr, level=max(numeric, logging.WARNING), format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_child_details,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
