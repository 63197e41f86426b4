"""The one logging configuration: JSON lines on stderr that carry nothing of a child, by construction.

Every line, from our structlog loggers and from the standard library's (temporalio, asyncpg, uvicorn, ...),
goes through the same processors:

- **An allow-list of fields** (`ALLOWED_FIELDS`): identifiers, stages, counts, codes. The value of any other
  key is replaced by `"[withheld]"`, whatever the caller passes; a nested dict is filtered by the same list at
  every depth, and a list is kept only under a key that holds ids (`LIST_FIELDS`) and only of scalars. Fields
  that hold a code (`CODE_FIELDS`: `reason`, `error`, ...) keep a value only when it looks like one (letters,
  digits, `-_.:`, no spaces), so a sentence someone passed as a "reason" is withheld too.
- **Exceptions as their type and frames** (file, line, function): never local variables, and never the
  exception's message, which can quote data (an asyncpg error's DETAIL quotes the row). Only our own
  exception types whose messages are written for people and quote no record (`SAFE_MESSAGE_TYPES`:
  configuration errors, refused payloads) keep their message. The chain (`__cause__`, `__context__`) is shown
  the same way.
- **Standard-library records** are rendered from their format string, never with their arguments
  interpolated (`logger.warning("failed for %s", value)` shows `failed for %s`); their `extra` fields go
  through the allow-list. uvicorn's access lines keep the method, the path without its query string (search
  terms live there) and the status; never the client's address.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Mapping, MutableMapping
from types import TracebackType
from typing import Any

import structlog

WITHHELD = "[withheld]"

# Field names a log line may carry (grep every log call: `grep -rn "log\.\(info\|warning\|error\)"`).
ALLOWED_FIELDS = frozenset(
    {
        # structlog's own and our processors'
        "event",
        "level",
        "timestamp",
        "logger",
        "exception",
        # identifiers (ids say nothing about a child by design: SR-… random, CP-… directory uids)
        "request_id",
        # which of the signed logs (audit log, access log)
        "stream",
        "workflow_id",
        "run_id",
        "child_uid",
        "document_id",
        "key_id",
        "namespace",
        "task_queue",
        "workflow_type",
        "activity_type",
        "activity_id",
        "attempt",
        "signal",
        "audit_anchor_schedule",
        "retention_schedule",
        # the outbox relay (shielding.delivery): a message's number, never its address or content
        "notification_id",
        "relay_schedule",
        "digest_schedule",
        "provider",
        # who acted: a staff account (never a child's or requestor's name; `name` is withheld as ambiguous)
        "actor",
        # what happened
        "stage",
        "action",
        "operation",
        "role",
        "code",
        "status",
        "method",
        "path",
        # counts and sizes
        "count",
        "children",
        "documents",
        "payloads",
        "decoded",
        "requests",
        "sealed",
        "already",
        "overdue",
        "entries",
        "anchored_entry",
        "first_broken_entry",
        "duration_ms",
        # where a service listens, and its configured issuers and origins
        "host",
        "port",
        "cors_origin",
        "configured",
        "discovered",
        # codes (see CODE_FIELDS)
        "reason",
        "error",
        "problem",
        "claim",
        # temporalio's `extra` on workflow and activity loggers: dicts of ids, filtered by this same list
        "temporal_workflow",
        "temporal_activity",
        # lists of ids
        "child_uids",
        "document_ids",
        "request_ids",
    }
)
# Fields whose value is a list of scalar ids.
LIST_FIELDS = frozenset({"child_uids", "document_ids", "request_ids"})
# Fields whose value must look like a code, not a sentence: a free-text "reason" is withheld.
CODE_FIELDS = frozenset({"reason", "error", "problem", "claim", "code"})
_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Longest string kept in any field: ids and codes are short; anything longer is not one of them.
MAX_VALUE_CHARS = 300
# Our exceptions whose messages are sentences for people that quote no record (checked by qualified name, so
# this module imports nothing of the service).
SAFE_MESSAGE_TYPES = frozenset({"shielding.settings.ConfigurationError", "shielding.codec.PayloadRefused"})
MAX_FRAMES = 40
MAX_CHAINED = 5


def _safe_value(key: str, value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            return WITHHELD
        if key in CODE_FIELDS and not _CODE.fullmatch(value):
            return WITHHELD
        if key == "path":
            return value.split("?", 1)[0].split("#", 1)[0]
        return str(value)  # a str enum becomes its plain value
    if isinstance(value, Mapping) and depth < 3:
        return _filter(value, depth + 1)
    if isinstance(value, list | tuple | set | frozenset) and key in LIST_FIELDS:
        items = list(value)
        if all(item is None or isinstance(item, str | int) for item in items):
            return [_safe_value(key, item, depth) for item in items]
    return WITHHELD


def _filter(event_dict: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    return {
        str(key): (_safe_value(str(key), value, depth) if key in ALLOWED_FIELDS else WITHHELD)
        for key, value in event_dict.items()
    }


def redact_child_details(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The allow-list: every field not in `ALLOWED_FIELDS` withheld; `exc_info` left for `render_exception`."""
    exc_info = event_dict.pop("exc_info", None)
    event_dict.pop("stack_info", None)
    event = event_dict.get("event")
    filtered = _filter(event_dict)
    if not isinstance(event, str):
        filtered["event"] = WITHHELD
    event_dict.clear()
    event_dict.update(filtered)
    if exc_info:
        event_dict["exc_info"] = exc_info
    return event_dict


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def describe_exception(exc: BaseException) -> list[dict[str, Any]]:
    """The exception and its chain: types and frames; a message only for `SAFE_MESSAGE_TYPES`."""
    chain: list[dict[str, Any]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(chain) < MAX_CHAINED:
        seen.add(id(current))
        described: dict[str, Any] = {"type": _type_name(current)}
        if described["type"] in SAFE_MESSAGE_TYPES:
            described["message"] = str(current)
        described["frames"] = _frames(current.__traceback__)
        chain.append(described)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return chain


def _frames(tb: TracebackType | None) -> list[dict[str, Any]]:
    frames = [
        {"file": frame.f_code.co_filename, "line": line, "function": frame.f_code.co_name}
        for frame, line in traceback.walk_tb(tb)
    ]
    return frames[-MAX_FRAMES:]


def render_exception(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc = _exception_of(event_dict.pop("exc_info", None))
    if exc is not None:
        event_dict["exception"] = describe_exception(exc)
    return event_dict


def from_standard_library(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A stdlib record: its format string (never its arguments), its logger's name, uvicorn's access fields."""
    record = event_dict.pop("_record", None)
    args = event_dict.pop("positional_args", None)
    event_dict.pop("_from_structlog", None)
    if not isinstance(record, logging.LogRecord):
        return event_dict
    event_dict["event"] = record.msg if isinstance(record.msg, str) else WITHHELD
    event_dict["logger"] = record.name
    if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
        _client, method, path, _version, status = args
        event_dict.update(event="http request", method=method, path=path, status=status)
    return event_dict


def _drop_internal(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def _logger_name(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    name = event_dict.pop("logger_name", None)
    if name is not None and "logger" not in event_dict:
        event_dict["logger"] = name
    return event_dict


SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    _logger_name,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    redact_child_details,
    render_exception,
]

_configured = False


class _ServiceHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler on the root logger (so a second configuration replaces it instead of adding another)."""


def configure_logging(level: str = "INFO") -> None:
    global _configured
    if _configured:
        return
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[*SHARED_PROCESSORS, structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # The standard library's loggers (temporalio, asyncpg, uvicorn, ...): the same processors, the same stream.
    handler = _ServiceHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), from_standard_library],
            processors=[_drop_internal, *SHARED_PROCESSORS, structlog.processors.JSONRenderer()],
            use_get_message=False,
            pass_foreign_args=True,
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _ServiceHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries are chatty at INFO: their warnings and errors only.
    root.setLevel(max(numeric, logging.WARNING))
    _configured = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    # `logger` itself is a parameter of structlog.get_logger: bound as `logger_name`, renamed on the way out.
    return structlog.get_logger(name, logger_name=name)  # type: ignore[no-any-return]
