"""Logs carry nothing of a child by construction: a real process, configured as the service configures
itself, logs child data every way a careless caller could (a nested dict, a free-text reason, an exception
with the data in a local variable and in its message, a standard-library logger with the data in its
arguments, uvicorn's access line with a search in its query string), and its stderr holds no canary.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shielding import log as shielding_log

ROOT = Path(__file__).resolve().parent.parent


def canaries() -> dict[str, str]:
    tag = secrets.token_hex(6)
    return {
        "given_name": f"Zainabcanary{tag}",
        "postcode": f"NW8 {tag[:3].upper()}",
        "address": f"17 Canary Gardens {tag}",
        "school": f"Canary Primary {tag}",
        "reason": f"Older sister at risk {tag}",
        "phone": f"020 7946 {tag[:4]}",
        "carer": f"carer-canary-{tag}",
        "search": f"searchcanary{tag}",
        "message": f"messagecanary{tag}",
        "local": f"localcanary{tag}",
    }


SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    from shielding.log import configure_logging, get_logger
    from shielding.settings import ConfigurationError

    c = json.loads(sys.argv[1])
    configure_logging("DEBUG")
    log = get_logger("shielding.canary")

    # 1. A log call passing child data in a nested dict, a list, a free-text reason and unknown keys.
    log.info(
        "intake",
        request_id="SR-ABCDEFGHJKLM",
        child_uid="CP-1004-ZO",
        stage="shielded",
        children=[{"given_name": c["given_name"]}],
        details={"request_id": "SR-ABCDEFGHJKLM", "address": c["address"], "inner": {"postcode": c["postcode"]}},
        temporal_workflow={"workflow_id": "SR-ABCDEFGHJKLM", "memo": {"school": c["school"]}},
        reason=c["reason"],
        error="UniqueViolationError",
        phone=c["phone"],
        count=2,
    )

    # 2. An exception raised with child data in scope: in a local variable and in its message.
    def shield(record):
        carer = c["carer"]
        local_copy = {"address": c["address"], "local": c["local"]}
        raise ValueError(f"could not shield {record['given_name']} at {carer}: {c['message']}")

    try:
        try:
            shield({"given_name": c["given_name"]})
        except ValueError as err:
            raise RuntimeError(f"activity failed for {c['postcode']}") from err
    except RuntimeError:
        log.exception("shield failed", request_id="SR-ABCDEFGHJKLM")

    # 3. The standard library's loggers: arguments, extras, an exception object as the message, exc_info.
    logging.getLogger("temporalio").warning(
        "activity failed for %s at %s", c["given_name"], c["address"],
        extra={"request_id": "SR-ABCDEFGHJKLM", "school": c["school"]},
    )
    logging.getLogger("asyncpg").error(ValueError(c["message"]))
    try:
        shield({"given_name": c["given_name"]})
    except ValueError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    logging.getLogger("uvicorn.access").warning(
        '%s - "%s %s HTTP/%s" %d', "203.0.113.9", "GET", f"/children?family_name={c['search']}", "1.1", 200
    )

    # 4. One of our exceptions whose message is for people and quotes no record: its message is kept.
    try:
        raise ConfigurationError("SHIELDING_ACTION_KEYS is required in production.")
    except ConfigurationError:
        log.exception("configuration refused")
    """
)


@pytest.fixture(scope="module")
def logged() -> tuple[dict[str, str], str]:
    values = canaries()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIELDING_")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(values)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""
    return values, done.stderr


def lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def found(stderr: str, values: dict[str, str]) -> list[str]:
    lowered = stderr.lower()
    return [name for name, value in values.items() if value.lower() in lowered]


def test_no_canary_reaches_stderr(logged: tuple[dict[str, str], str]) -> None:
    values, stderr = logged
    assert found(stderr, values) == []
    # Every line is one JSON object (nothing printed by a library's own formatter).
    assert len(lines(stderr)) == 7


def test_the_allowed_fields_are_kept_and_the_rest_withheld(logged: tuple[dict[str, str], str]) -> None:
    _, stderr = logged
    intake = next(line for line in lines(stderr) if line["event"] == "intake")
    assert intake["request_id"] == "SR-ABCDEFGHJKLM" and intake["child_uid"] == "CP-1004-ZO"
    assert intake["stage"] == "shielded" and intake["count"] == 2 and intake["error"] == "UniqueViolationError"
    assert intake["logger"] == "shielding.canary" and intake["level"] == "info" and intake["timestamp"]
    for key in ("children", "details", "reason", "phone"):
        assert intake[key] == shielding_log.WITHHELD, key
    # A dict under an allowed key is filtered by the same list, at every depth.
    assert intake["temporal_workflow"] == {"workflow_id": "SR-ABCDEFGHJKLM", "memo": shielding_log.WITHHELD}


def test_exceptions_show_types_and_frames_only(logged: tuple[dict[str, str], str]) -> None:
    _, stderr = logged
    failed = next(line for line in lines(stderr) if line["event"] == "shield failed")
    chain = failed["exception"]
    assert [e["type"] for e in chain] == ["RuntimeError", "ValueError"]
    assert all("message" not in e for e in chain)
    assert {"file", "line", "function"} == set(chain[1]["frames"][-1])
    assert chain[1]["frames"][-1]["function"] == "shield"
    refused = next(line for line in lines(stderr) if line["event"] == "configuration refused")
    (config,) = refused["exception"]
    assert config["type"] == "shielding.settings.ConfigurationError"
    assert config["message"] == "SHIELDING_ACTION_KEYS is required in production."


def test_standard_library_lines_go_through_the_same_processors(logged: tuple[dict[str, str], str]) -> None:
    _, stderr = logged
    by_logger = {line["logger"]: line for line in lines(stderr)}
    temporal = by_logger["temporalio"]
    assert temporal["event"] == "activity failed for %s at %s"  # the format string, never its arguments
    assert temporal["request_id"] == "SR-ABCDEFGHJKLM" and temporal["school"] == shielding_log.WITHHELD
    assert temporal["level"] == "warning" and temporal["timestamp"]
    assert by_logger["asyncpg"]["event"] == shielding_log.WITHHELD
    assert [e["type"] for e in by_logger["uvicorn.error"]["exception"]] == ["ValueError"]
    access = by_logger["uvicorn.access"]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/children", 200)
    assert "203.0.113.9" not in stderr


def test_the_processor_keeps_ids_and_withholds_everything_else() -> None:
    values = canaries()
    event = {
        "event": "oops",
        "request_id": "SR-ABCDEFGHJKLM",
        "document_ids": ["3f2a", "9b1c"],
        "child_uids": [{"given_name": values["given_name"]}],
        "reason": "failed-authentication",
        "problem": values["reason"],
        "name": values["given_name"],
        "postcode": values["postcode"],
        "stage": "awaiting-form",
        "path": f"/children/CP-1?q={values['search']}",
    }
    out = shielding_log.redact_child_details(None, "info", dict(event))
    assert found(json.dumps(out), values) == []
    assert out["request_id"] == "SR-ABCDEFGHJKLM" and out["stage"] == "awaiting-form"
    assert out["document_ids"] == ["3f2a", "9b1c"] and out["child_uids"] == shielding_log.WITHHELD
    # A code is kept; a sentence under the same kind of key is not.
    assert out["reason"] == "failed-authentication" and out["problem"] == shielding_log.WITHHELD
    assert out["name"] == out["postcode"] == shielding_log.WITHHELD
    assert out["path"] == "/children/CP-1"
