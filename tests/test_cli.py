"""The `shielding` command end to end, against a real `shielding dev` stack run as a subprocess.

Every command runs as its own process, as a person at a terminal would run it: success prints what was
done (one JSON object with --json), and every failure is one `error:` line on stderr with a non-zero exit
and no stack trace.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from cli.app import app
from tests.helpers.devstack import DevStack, Result, run_cli

pytestmark = pytest.mark.devserver

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "directory.jsonl"

MANAGER = "mgr.cli"
INTAKE = "intake.cli"
REVIEWER = "reviewer.cli"

PRACTITIONER_KEYS = {"uid", "given_name", "family_name", "aliases", "gender", "date_of_birth", "shielded"}


def requestor(*, phone: str | None = "020 7641 0000", email: str | None = None) -> list[str]:
    args = [
        "--requestor-type",
        "professional",
        "--requestor-name",
        "Dana Whitcombe",
        "--requestor-organisation",
        "Westminster Children's Services",
    ]
    if phone:
        args += ["--requestor-phone", phone]
    if email:
        args += ["--requestor-email", email]
    return args


def request_args(
    *children: str, criteria: tuple[str, ...] = ("domestic-violence",), **contact: str | None
) -> list[str]:
    args = ["request"]
    for uid in children:
        args += ["--child", uid]
    for code in criteria:
        args += ["--criterion", code]
    return [*args, "--reason", "Father subject to a non-molestation order; family in a refuge.", *requestor(**contact)]


def assert_error(result: Result, *needles: str) -> str:
    """A refusal: non-zero exit, exactly one `error:` line on stderr naming the problem, and no trace."""
    assert result.returncode != 0, str(result)
    assert "Traceback" not in result.stdout + result.stderr, str(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr\n{result}"
    assert lines[0].startswith("error:"), str(result)
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not named in the error\n{result}"
    return lines[0]


def ok(result: Result) -> Result:
    assert result.returncode == 0, str(result)
    assert "Traceback" not in result.stdout + result.stderr, str(result)
    return result


def start_stack(root: Path) -> DevStack:
    stack = DevStack(root / "data")
    try:
        stack.start()
    except BaseException:
        stack.ensure_stopped()
        raise
    assert (stack.data_dir / "stack.json").is_file(), stack.describe()
    return stack


def stop_stack(stack: DevStack) -> None:
    code, stdout = stack.stop()
    assert code == 0, f"`shielding dev` exited {code} on SIGTERM\n{stack.describe()}"
    assert "stopped" in stdout.splitlines(), stack.describe()
    assert not (stack.data_dir / "stack.json").exists(), "the stack file outlived the stack"


def add_users_and_import(stack: DevStack) -> None:
    ok(stack.run("users", "add", MANAGER, "--role", "manager", actor=MANAGER))
    assert ok(stack.run("users", "add", INTAKE, "--role", "intake", "--json", actor=MANAGER)).json() == {
        "name": INTAKE,
        "role": "intake",
    }
    ok(stack.run("users", "add", REVIEWER, "--role", "reviewer", actor=MANAGER))
    imported = ok(stack.run("directory", "import", str(SAMPLES), "--json", actor=MANAGER)).json()
    assert imported["imported"] == len(SAMPLES.read_text().splitlines())


def request_shield(stack: DevStack, uid: str) -> dict:
    ack = ok(stack.run(*request_args(uid), "--json", actor=INTAKE)).json()
    assert ack["stage"] == "awaiting-form", ack
    return ack


@pytest.fixture(scope="module")
def stack() -> Iterator[DevStack]:
    root = Path(tempfile.mkdtemp(prefix="shielding-cli-"))
    running = start_stack(root)
    try:
        yield running
        stop_stack(running)
    finally:
        running.ensure_stopped()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def seeded(stack: DevStack) -> DevStack:
    """The first manager, an intake officer and a reviewer; the sample directory loaded."""
    add_users_and_import(stack)
    return stack


# ------------------------------------------------------------------------------------ no server needed


def _command_paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in sorted(group.commands.items()):
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _command_paths(command, (*prefix, name))


ALL_COMMANDS = [(), *_command_paths(typer.main.get_command(app))]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "shielding")
def test_help_for_every_command(tmp_path: Path, command: tuple[str, ...]) -> None:
    result = ok(run_cli(tmp_path, *command, "--help", timeout=60))
    assert "Usage:" in result.stdout


def test_every_command_is_covered_by_help() -> None:
    names = {" ".join(c) for c in ALL_COMMANDS}
    for expected in ("dev", "request", "form", "review", "unshield", "status", "view", "search", "deadlines"):
        assert expected in names
    for expected in ("audit", "audit verify", "directory import", "users add"):
        assert expected in names


def test_deadlines_needs_no_server(tmp_path: Path) -> None:
    empty = tmp_path / "empty-data-dir"
    empty.mkdir()
    payload = ok(run_cli(empty, "deadlines", "--called-at", "2026-12-21T10:00:00+00:00", "--json")).json()
    assert payload["form_due_at"] == "2027-01-05T00:00:00+00:00"
    assert set(payload) == {"form_due_at", "review_7_day_at", "review_6_month_at"}
    text = ok(run_cli(empty, "deadlines", "--called-at", "2026-12-21T10:00:00+00:00")).stdout
    assert "2027-01-05T00:00:00+00:00" in text
    assert list(empty.iterdir()) == [], "deadlines wrote into the data dir"


def test_deadlines_refuses_an_instant_without_offset(tmp_path: Path) -> None:
    assert_error(run_cli(tmp_path, "deadlines", "--called-at", "2026-12-21T10:00:00", "--json"), "offset")


# ------------------------------------------------------------------------------------------ restart


def test_restart_keeps_the_shield_and_the_workflow_waiting() -> None:
    """`shielding dev` stopped and started again: the request is still shielded and its workflow waits."""
    root = Path(tempfile.mkdtemp(prefix="shielding-cli-restart-"))
    stack = start_stack(root)
    try:
        add_users_and_import(stack)
        uid = "CP-1004-ZO"
        ack = request_shield(stack, uid)
        request_id = ack["request_id"]
        before = ok(stack.run("status", request_id, "--json", actor=INTAKE)).json()
        assert before["stage"] == "awaiting-form"

        stop_stack(stack)
        # With the stack down a command fails in one line, naming what to start.
        assert_error(stack.run("view", uid, actor=INTAKE), "shielding dev")

        stack.start()
        assert "ready" in stack.stdout().splitlines()

        record = ok(stack.run("view", uid, "--json", actor=INTAKE)).json()
        assert record["shielded"] is True
        assert set(record) == PRACTITIONER_KEYS

        after = ok(stack.run("status", request_id, "--json", actor=INTAKE)).json()
        assert after["stage"] == "awaiting-form"
        assert after["form_due_at"] == before["form_due_at"] == ack["form_due_at"]
        assert after["next_review_at"] == before["next_review_at"]

        # The workflow is still there and still waiting for the form: recording it now moves it on.
        document = root / "form.pdf"
        document.write_bytes(b"%PDF-1.4 shielding request form\n")
        outcome = ok(stack.run("form", request_id, "--document", str(document), "--json", actor=INTAKE)).json()
        assert outcome["accepted"] is True
        final = ok(stack.run("status", request_id, "--json", actor=INTAKE)).json()
        assert final["stage"] == "shielded"
        assert final["form_received_at"] is not None
        assert ok(stack.run("view", uid, "--json", actor=INTAKE)).json()["shielded"] is True

        stop_stack(stack)
    finally:
        stack.ensure_stopped()
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------------------------------ directory


def test_import_with_a_bad_line_names_it_and_imports_nothing(seeded: DevStack, tmp_path: Path) -> None:
    # A copy of the samples under fresh identifiers, so "nothing imported" is visible, with line 3 broken.
    lines = [line.replace('"uid": "CP-1', '"uid": "CP-7') for line in SAMPLES.read_text().splitlines()]
    lines.insert(2, '{"uid": "CP-7999-XX", "given_name": "Half a record"')
    bad = tmp_path / "directory-bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")

    assert_error(seeded.run("directory", "import", str(bad), actor=MANAGER), "line 3", "nothing imported")
    for uid in ("CP-7001-AH", "CP-7005-TM"):
        assert_error(seeded.run("view", uid, actor=INTAKE), uid)


def test_view_of_an_unshielded_child_shows_everything(seeded: DevStack) -> None:
    record = ok(seeded.run("view", "CP-1003-RK", "--json", actor=INTAKE)).json()
    assert record["shielded"] is False
    assert record["address"]["postcode"] == "NW8 8EP"
    assert record["school"] == "Paddington Academy"


def test_view_of_an_unknown_child(seeded: DevStack) -> None:
    assert_error(seeded.run("view", "CP-0000-NO", "--json", actor=INTAKE), "CP-0000-NO")


# ----------------------------------------------------------------------------------------- error paths


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        pytest.param(request_args("CP-1005-TM", criteria=("moved-house",)), ("moved-house",), id="unknown-criterion"),
        pytest.param(request_args("CP-1005-TM", criteria=("objection-in-principle",)), ("objection",), id="objection"),
        pytest.param(request_args("CP-9999-ZZ"), ("CP-9999-ZZ",), id="unknown-child"),
        pytest.param(request_args("CP-1005-TM", phone=None, email=None), ("phone", "email"), id="no-contact"),
        pytest.param([*request_args("CP-1005-TM"), "--called-at", "2026-11-24T10:30:00"], ("offset",), id="no-offset"),
    ],
)
def test_request_refusals(seeded: DevStack, args: list[str], needles: tuple[str, ...]) -> None:
    assert_error(seeded.run(*args, "--json", actor=INTAKE), *needles)
    # Refused means nothing was shielded.
    assert ok(seeded.run("view", "CP-1005-TM", "--json", actor=INTAKE)).json()["shielded"] is False


def test_form_for_an_unknown_request(seeded: DevStack, tmp_path: Path) -> None:
    document = tmp_path / "form.pdf"
    document.write_bytes(b"%PDF-1.4 form\n")
    result = seeded.run("form", "SR-AAAAAAAAAAAA", "--document", str(document), "--json", actor=INTAKE)
    assert_error(result, "no shielding request", "SR-AAAAAAAAAAAA")


def test_review_with_no_review_due(seeded: DevStack) -> None:
    request_id = request_shield(seeded, "CP-1002-OH")["request_id"]
    assert_error(seeded.run("review", request_id, "--approve", "--json", actor=REVIEWER), "No review is due")
    status = ok(seeded.run("status", request_id, "--json", actor=REVIEWER)).json()
    assert status["stage"] == "awaiting-form"
    assert status["reviews"] == []


# ------------------------------------------------------------------------------------------ lifecycle


def test_request_form_duplicate_unshield_and_audit(seeded: DevStack, tmp_path: Path) -> None:
    uid = "CP-1001-AH"
    ack = request_shield(seeded, uid)
    request_id = ack["request_id"]
    assert {"request_id", "stage", "children", "form_due_at", "review_7_day_at", "review_6_month_at"} <= set(ack)
    assert ack["children"] == [{"uid": uid, "shielded": True, "existing_request_id": None}]
    assert ack["form_due_at"] and ack["review_7_day_at"] and ack["review_6_month_at"]

    # A practitioner sees exactly the permitted fields of a shielded record, and nothing else.
    record = ok(seeded.run("view", uid, "--json", actor=INTAKE)).json()
    assert set(record) == PRACTITIONER_KEYS
    assert record["shielded"] is True
    assert record["uid"] == uid

    status = ok(seeded.run("status", request_id, "--json", actor=INTAKE)).json()
    assert {"request_id", "stage", "form_due_at", "next_review_at"} <= set(status)
    assert status["request_id"] == request_id
    assert status["stage"] == "awaiting-form"
    assert status["form_due_at"] == ack["form_due_at"]
    assert status["next_review_at"] == ack["review_7_day_at"]

    # A second request for the same child points at the request already shielding it.
    duplicate = ok(seeded.run(*request_args(uid, criteria=("refuge",)), "--json", actor=INTAKE)).json()
    assert duplicate["stage"] == "duplicate"
    assert duplicate["request_id"] != request_id
    assert duplicate["children"][0]["existing_request_id"] == request_id
    assert request_id in duplicate["message"]

    # The form: an empty file is refused, a real document accepted.
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    assert_error(seeded.run("form", request_id, "--document", str(empty), actor=INTAKE), "empty.pdf", "empty")
    document = tmp_path / "form.pdf"
    document.write_bytes(b"%PDF-1.4 shielding request form, signed\n")
    outcome = ok(seeded.run("form", request_id, "--document", str(document), "--json", actor=INTAKE)).json()
    assert outcome["request_id"] == request_id
    assert outcome["accepted"] is True
    status = ok(seeded.run("status", request_id, "--json", actor=INTAKE)).json()
    assert status["stage"] == "shielded"
    assert status["form_received_at"] is not None

    # Intake may not unshield; the refusal is itself audited.
    refusal = assert_error(seeded.run("unshield", request_id, "--reason", "moved away", actor=INTAKE), "unshield")
    assert INTAKE in refusal
    assert ok(seeded.run("view", uid, "--json", actor=INTAKE)).json()["shielded"] is True

    lifted = ok(
        seeded.run("unshield", request_id, "--reason", "Family rehoused; risk has passed.", "--json", actor=REVIEWER)
    ).json()
    assert lifted["accepted"] is True
    assert lifted["stage"] == "unshielded"
    record = ok(seeded.run("view", uid, "--json", actor=INTAKE)).json()
    assert record["shielded"] is False
    assert record["address"]["postcode"] == "NW8 8LF"

    audit = ok(seeded.run("audit", "--request", request_id, "--json", actor=REVIEWER)).json()
    assert set(audit) == {"entries"}
    entries = audit["entries"]
    for entry in entries:
        assert {"at", "action", "actor", "reason", "request_id"} <= set(entry), entry
        assert entry["request_id"] == request_id
    actions = [e["action"] for e in entries]
    for expected in ("received", "shielded", "form-received", "unshielded"):
        assert expected in actions, actions
    assert actions.index("received") < actions.index("shielded") < actions.index("unshielded")
    denied = [e for e in entries if e["action"] == "unauthorised"]
    assert [(e["actor"], e["details"]["attempted"]) for e in denied] == [(INTAKE, "unshield")]
    unshielded = next(e for e in entries if e["action"] == "unshielded")
    assert (unshielded["actor"], unshielded["reason"]) == (REVIEWER, "Family rehoused; risk has passed.")

    # After the lifecycle has ended there is nothing left to unshield or to take a form for.
    assert_error(seeded.run("unshield", request_id, "--reason", "again", actor=REVIEWER), request_id)


def test_search_and_audit_verify_print_json(seeded: DevStack) -> None:
    found = ok(seeded.run("search", "--family-name", "Kapoor", "--json", actor=INTAKE)).json()
    assert [r["uid"] for r in found["results"]] == ["CP-1003-RK"]
    verified = ok(seeded.run("audit", "verify", "--json", actor=MANAGER)).json()
    assert verified["intact"] is True
    by_child = ok(seeded.run("audit", "--child", "CP-1003-RK", "--json", actor=MANAGER)).json()
    assert isinstance(by_child["entries"], list)


def test_an_unregistered_actor_is_refused(seeded: DevStack) -> None:
    assert_error(seeded.run("view", "CP-1003-RK", "--json", actor="nobody"), "nobody", "not a registered user")


# ------------------------------------------------------------------------- what leaves through logs


CANARY = {
    "given_name": "Quillonbe",
    "family_name": "Zarvethwick",
    "alias": "Quill Zarvethwick-Amory",
    "date_of_birth": "2016-02-29",
    "address_line": "77 Mirrowgate Terrace",
    "postcode": "ZX9 4QQ",
    "carer": "Orsolya Vantreece",
    "carer_phone": "020 7946 8817",
    "school": "Thistlewood Academy",
    "gp": "Harrowmere Surgery",
    "reason": "Ex-partner traced family via Ravelstone contact centre",
    "requestor_name": "Perpetua Calloway-Strand",
    "requestor_email": "p.calloway-strand@example.org",
}


def test_cli_and_dev_stack_logs_and_notifications_carry_no_child_data(seeded: DevStack, tmp_path: Path) -> None:
    """A whole lifecycle through the CLI with canary values: no log line of the CLI, the dev stack or its
    worker, and no notification, carries any of them; notifications never carry the address."""
    uid = "CP-CANARY-01"
    record = {
        "uid": uid,
        "given_name": CANARY["given_name"],
        "family_name": CANARY["family_name"],
        "aliases": [CANARY["alias"]],
        "gender": "female",
        "date_of_birth": CANARY["date_of_birth"],
        "address": {"lines": [CANARY["address_line"], "London"], "postcode": CANARY["postcode"]},
        "carers": [{"name": CANARY["carer"], "relationship": "aunt", "phone": CANARY["carer_phone"]}],
        "school": CANARY["school"],
        "gp_practice": CANARY["gp"],
    }
    feed = tmp_path / "canary.jsonl"
    feed.write_text(json.dumps(record) + "\n")
    form = tmp_path / "form.pdf"
    form.write_bytes(b"%PDF-1.7 canary form")
    stack_output_before = len(seeded.stdout()) + len(seeded.stderr())
    results = [
        ok(seeded.run("directory", "import", str(feed), actor=MANAGER)),
        request := ok(
            seeded.run(
                "request",
                "--child",
                uid,
                "--criterion",
                "domestic-violence",
                "--reason",
                CANARY["reason"],
                "--requestor-type",
                "public",
                "--requestor-name",
                CANARY["requestor_name"],
                "--requestor-email",
                CANARY["requestor_email"],
                "--json",
                actor=INTAKE,
                SHIELDING_LOG_LEVEL="DEBUG",
            )
        ),
    ]
    request_id = request.json()["request_id"]
    results += [
        ok(seeded.run("view", uid, actor=INTAKE, SHIELDING_LOG_LEVEL="DEBUG")),
        ok(seeded.run("form", request_id, "--document", str(form), actor=INTAKE, SHIELDING_LOG_LEVEL="DEBUG")),
        ok(seeded.run("status", request_id, actor=INTAKE, SHIELDING_LOG_LEVEL="DEBUG")),
        ok(seeded.run("unshield", request_id, "--reason", "risk ended", actor=REVIEWER, SHIELDING_LOG_LEVEL="DEBUG")),
    ]
    # The shielded view printed only permitted fields.
    assert CANARY["postcode"] not in results[2].stdout and CANARY["school"] not in results[2].stdout
    logs = "".join(r.stderr for r in results) + seeded.stdout() + seeded.stderr()
    assert request_id in seeded.stdout() + seeded.stderr(), "the worker's log lines were not captured"
    assert len(seeded.stdout()) + len(seeded.stderr()) > stack_output_before
    for name, value in CANARY.items():
        assert value not in logs, f"{name} leaked into a log line"
    stack_file = json.loads((seeded.data_dir / "stack.json").read_text())

    async def notifications() -> list[dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(stack_file["database_url"])
        try:
            rows = await conn.fetch("SELECT * FROM notifications WHERE request_id = $1", request_id)
        finally:
            await conn.close()
        return [dict(r) for r in rows]

    import asyncio

    sent = asyncio.run(notifications())
    assert any(n["recipient_kind"] == "requestor" for n in sent)
    for note in sent:
        text = f"{note['subject']} {note['body']}"
        for name, value in CANARY.items():
            if name == "requestor_email" and note["recipient_kind"] == "requestor":
                assert value not in text  # the address is the envelope, never the content
            assert value not in text, f"{name} leaked into a notification"
