"""The `shielding` command end to end, against a real `shielding dev` stack run as a subprocess.

Every command runs as its own process, as a person at a terminal would run it: success prints what was
done (one JSON object with --json), and every failure is one `error:` line on stderr with a non-zero exit
and no stack trace. Staff commands go through the web service as whoever signed in with `shielding login`
(each person has a credentials file of their own); nothing else says who is acting.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import asyncpg
import pytest
import typer

from cli.app import app
from cli.errors import NOT_SIGNED_IN
from tests.helpers.devstack import DevStack, Result, password_for, run_cli

pytestmark = pytest.mark.devserver

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "directory.jsonl"

MANAGER = "mgr.cli"
INTAKE = "intake.cli"
REVIEWER = "reviewer.cli"
PROTECTOR = "protect.cli"

PRACTITIONER_KEYS = {"uid", "given_name", "family_name", "aliases", "gender", "date_of_birth", "shielded"}
HIDDEN_KEYS = {"address", "carers", "school", "gp_practice"}
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")  # fmt: skip


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


# The samples' brother and sister share a home: a request for one says why the other is not added (a decision
# about a record already shielded, or already on the request, is not needed and changes nothing).
CO_RESIDENTS = {"CP-1001-AH": "CP-1002-OH", "CP-1002-OH": "CP-1001-AH"}


def request_args(
    *children: str, criteria: tuple[str, ...] = ("domestic-violence",), **contact: str | None
) -> list[str]:
    args = ["request"]
    for uid in children:
        args += ["--child", uid]
        if (other := CO_RESIDENTS.get(uid)) and other not in children:
            args += ["--not-related", f"{other}=Lives with their father; not at risk (test)"]
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


def stdin_password(name: str) -> str:
    return password_for(name) + "\n"


def add_user(stack: DevStack, name: str, role: str, *extra: str, by: str = MANAGER) -> Result:
    """A local account (its password from standard input), added by a signed-in manager."""
    return stack.run(
        "users", "add", name, "--role", role, "--password-stdin", *extra, as_user=by, input=stdin_password(name)
    )


def add_users_and_import(stack: DevStack) -> None:
    bootstrapped = ok(stack.run("users", "bootstrap", MANAGER, "--password-stdin", input=stdin_password(MANAGER)))
    assert f"user {MANAGER}: manager" in bootstrapped.stdout
    assert ok(add_user(stack, INTAKE, "intake", "--json")).json() == {"name": INTAKE, "role": "intake"}
    assert ok(add_user(stack, REVIEWER, "reviewer")).stdout.strip() == f"user {REVIEWER}: reviewer"
    imported = ok(stack.run("directory", "import", str(SAMPLES), "--json", as_user=MANAGER)).json()
    assert imported["imported"] == len(SAMPLES.read_text().splitlines())


def request_shield(stack: DevStack, uid: str) -> dict:
    ack = ok(stack.run(*request_args(uid), "--json", as_user=INTAKE)).json()
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


@pytest.fixture(scope="module")
def protector(seeded: DevStack) -> str:
    """A child-protection officer (a local account: break-glass asks for the password again)."""
    ok(add_user(seeded, PROTECTOR, "child-protection"))
    return PROTECTOR


def import_child(stack: DevStack, tmp_path: Path, uid: str, **fields: Any) -> dict[str, Any]:
    """A new child in the directory: the first sample record under another uid and name (so it is nobody's
    duplicate) and its own home and carer (so it is nobody's co-resident), with `fields` changed."""
    number = int(uid.split("-")[1])
    identity = {
        "given_name": f"Testchild{uid.split('-')[2].title()}",
        "family_name": "Clitest",
        "aliases": [],
        "date_of_birth": (date(2012, 1, 1) + timedelta(days=number)).isoformat(),
        "address": {"lines": [f"{number} Clitest Road", "London"], "postcode": "NW8 8LF"},
        "carers": [{"name": f"Carer {uid}", "relationship": "mother", "phone": "020 7946 0101"}],
    }
    record = {**json.loads(SAMPLES.read_text().splitlines()[0]), "uid": uid, **identity, **fields}
    feed = tmp_path / f"{uid}.jsonl"
    feed.write_text(json.dumps(record) + "\n")
    ok(stack.run("directory", "import", str(feed), as_user=MANAGER))
    return record


def stderr_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


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
    for expected in ("audit", "audit verify", "directory import", "users add", "users remove", "users list"):
        assert expected in names
    for expected in ("login", "logout", "users bootstrap", "serve", "worker", "migrate", "certs generate"):
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


def test_deadlines_read_a_midnight_deadline_as_the_end_of_the_day_before(tmp_path: Path) -> None:
    # Called on Wednesday 25 November 2026: the 7th working day after it is Friday 4 December.
    text = ok(run_cli(tmp_path, "deadlines", "--called-at", "2026-11-25T10:00:00+00:00")).stdout
    assert "form due by:     2026-12-05T00:00:00+00:00  (the end of Friday 4 December 2026)" in text, text


def test_staff_commands_without_a_service_name_what_to_start(tmp_path: Path) -> None:
    for args in (["view", "CP-1003-RK"], ["users", "list"], ["login", "someone", "--password-stdin"], ["logout"]):
        result = run_cli(tmp_path, *args, input="a-password-long-enough\n")
        if args == ["logout"]:
            assert ok(result).stdout.strip() == "not signed in"
            continue
        assert_error(result, "shielding dev", "SHIELDING_API_URL")


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
        before = ok(stack.run("status", request_id, "--json", as_user=INTAKE)).json()
        assert before["stage"] == "awaiting-form"

        web_url = stack.web_url
        stop_stack(stack)
        # With the stack down a command fails in one line, naming what to start.
        assert_error(stack.run("view", uid, as_user=INTAKE), "shielding dev")
        # Pointed at the service's address while nothing answers there: one line naming the address.
        unreachable = stack.run("view", uid, as_user=INTAKE, SHIELDING_API_URL=web_url)
        assert_error(unreachable, "cannot be reached", web_url, "shielding dev", "SHIELDING_API_URL")

        stack.start()
        assert "ready" in stack.stdout().splitlines()

        record = ok(stack.run("view", uid, "--json", as_user=INTAKE)).json()
        assert record["shielded"] is True
        assert set(record) == PRACTITIONER_KEYS

        after = ok(stack.run("status", request_id, "--json", as_user=INTAKE)).json()
        assert after["stage"] == "awaiting-form"
        assert after["form_due_at"] == before["form_due_at"] == ack["form_due_at"]
        assert after["next_review_at"] == before["next_review_at"]

        # The workflow is still there and still waiting for the form: recording it now moves it on.
        document = root / "form.pdf"
        document.write_bytes(b"%PDF-1.4 shielding request form\n")
        outcome = ok(stack.run("form", request_id, "--document", str(document), "--json", as_user=INTAKE)).json()
        assert outcome["accepted"] is True
        final = ok(stack.run("status", request_id, "--json", as_user=INTAKE)).json()
        assert final["stage"] == "shielded"
        assert final["form_received_at"] is not None
        assert ok(stack.run("view", uid, "--json", as_user=INTAKE)).json()["shielded"] is True

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

    assert_error(seeded.run("directory", "import", str(bad), as_user=MANAGER), "line 3", "nothing imported")
    for uid in ("CP-7001-AH", "CP-7005-TM"):
        assert_error(seeded.run("view", uid, as_user=INTAKE), uid)


def test_view_of_an_unshielded_child_shows_everything(seeded: DevStack) -> None:
    record = ok(seeded.run("view", "CP-1003-RK", "--json", as_user=INTAKE)).json()
    assert record["shielded"] is False
    assert record["address"]["postcode"] == "NW8 8EP"
    assert record["school"] == "Paddington Academy"


def test_view_of_an_unknown_child(seeded: DevStack) -> None:
    assert_error(seeded.run("view", "CP-0000-NO", "--json", as_user=INTAKE), "CP-0000-NO")


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
    assert_error(seeded.run(*args, "--json", as_user=INTAKE), *needles)
    # Refused means nothing was shielded.
    assert ok(seeded.run("view", "CP-1005-TM", "--json", as_user=INTAKE)).json()["shielded"] is False


def test_form_for_an_unknown_request(seeded: DevStack, tmp_path: Path) -> None:
    document = tmp_path / "form.pdf"
    document.write_bytes(b"%PDF-1.4 form\n")
    result = seeded.run("form", "SR-AAAAAAAAAAAA", "--document", str(document), "--json", as_user=INTAKE)
    assert_error(result, "no shielding request", "SR-AAAAAAAAAAAA")


def test_review_with_no_review_due(seeded: DevStack) -> None:
    request_id = request_shield(seeded, "CP-1002-OH")["request_id"]
    assert_error(seeded.run("review", request_id, "--approve", "--json", as_user=REVIEWER), "No review is due")
    status = ok(seeded.run("status", request_id, "--json", as_user=REVIEWER)).json()
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
    record = ok(seeded.run("view", uid, "--json", as_user=INTAKE)).json()
    assert set(record) == PRACTITIONER_KEYS
    assert record["shielded"] is True
    assert record["uid"] == uid

    status = ok(seeded.run("status", request_id, "--json", as_user=INTAKE)).json()
    assert {"request_id", "stage", "form_due_at", "next_review_at"} <= set(status)
    assert status["request_id"] == request_id
    assert status["stage"] == "awaiting-form"
    assert status["form_due_at"] == ack["form_due_at"]
    assert status["next_review_at"] == ack["review_7_day_at"]

    # A second request for the same child points at the request already shielding it.
    duplicate = ok(seeded.run(*request_args(uid, criteria=("refuge",)), "--json", as_user=INTAKE)).json()
    assert duplicate["stage"] == "duplicate"
    assert duplicate["request_id"] != request_id
    assert duplicate["children"][0]["existing_request_id"] == request_id
    assert request_id in duplicate["message"]

    # The form: an empty file is refused, a real document accepted.
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    assert_error(seeded.run("form", request_id, "--document", str(empty), as_user=INTAKE), "empty.pdf", "empty")
    document = tmp_path / "form.pdf"
    document.write_bytes(b"%PDF-1.4 shielding request form, signed\n")
    outcome = ok(seeded.run("form", request_id, "--document", str(document), "--json", as_user=INTAKE)).json()
    assert outcome["request_id"] == request_id
    assert outcome["accepted"] is True
    status = ok(seeded.run("status", request_id, "--json", as_user=INTAKE)).json()
    assert status["stage"] == "shielded"
    assert status["form_received_at"] is not None

    # Intake may not unshield; the refusal is itself audited.
    refusal = assert_error(seeded.run("unshield", request_id, "--reason", "moved away", as_user=INTAKE), "unshield")
    assert INTAKE in refusal
    assert ok(seeded.run("view", uid, "--json", as_user=INTAKE)).json()["shielded"] is True

    lifted = ok(
        seeded.run("unshield", request_id, "--reason", "Family rehoused; risk has passed.", "--json", as_user=REVIEWER)
    ).json()
    assert lifted["accepted"] is True
    assert lifted["stage"] == "unshielded"
    record = ok(seeded.run("view", uid, "--json", as_user=INTAKE)).json()
    assert record["shielded"] is False
    sibling = ok(seeded.run("view", CO_RESIDENTS[uid], "--json", as_user=INTAKE)).json()
    if sibling["shielded"]:  # by another test on this stack: their shared home stays withheld with it
        assert record["withheld"] is True and record["address"] is None and record["carers"] is None
    else:
        assert record["withheld"] is False and record["address"]["postcode"] == "NW8 8LF"

    audit = ok(seeded.run("audit", "--request", request_id, "--json", as_user=REVIEWER)).json()
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
    assert_error(seeded.run("unshield", request_id, "--reason", "again", as_user=REVIEWER), request_id)


def test_search_and_audit_verify_print_json(seeded: DevStack) -> None:
    found = ok(
        seeded.run("search", "--family-name", "Kapoor", "--date-of-birth", "2012-11-30", "--json", as_user=INTAKE)
    ).json()
    assert [r["uid"] for r in found["results"]] == ["CP-1003-RK"]
    verified = ok(seeded.run("audit", "verify", "--json", as_user=MANAGER)).json()
    assert verified["intact"] is True
    by_child = ok(seeded.run("audit", "--child", "CP-1003-RK", "--json", as_user=MANAGER)).json()
    assert isinstance(by_child["entries"], list)


def test_someone_who_cannot_sign_in_is_refused(seeded: DevStack, tmp_path: Path) -> None:
    assert_error(seeded.login("nobody", credentials=tmp_path / "nobody.json"), "sign-in failed")
    assert_error(seeded.run("view", "CP-1003-RK", "--json"), "shielding login")


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


def test_cli_and_dev_stack_logs_and_notifications_carry_no_child_data(
    seeded: DevStack, protector: str, tmp_path: Path
) -> None:
    """A whole lifecycle through the CLI with canary values: no log line of the CLI, the dev stack, its
    worker or its web service (whose log is the stack's stderr), and no notification, carries any of them;
    notifications never carry the address. Break-glass shows them on stdout, and only there."""
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
        ok(seeded.run("directory", "import", str(feed), as_user=MANAGER)),
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
                as_user=INTAKE,
                SHIELDING_LOG_LEVEL="DEBUG",
            )
        ),
    ]
    request_id = request.json()["request_id"]
    results += [
        ok(seeded.run("view", uid, as_user=INTAKE, SHIELDING_LOG_LEVEL="DEBUG")),
        ok(seeded.run("form", request_id, "--document", str(form), as_user=INTAKE, SHIELDING_LOG_LEVEL="DEBUG")),
        ok(seeded.run("status", request_id, as_user=INTAKE, SHIELDING_LOG_LEVEL="DEBUG")),
        ok(
            seeded.run(
                "search",
                "--family-name",
                CANARY["family_name"],
                "--date-of-birth",
                CANARY["date_of_birth"],
                as_user=INTAKE,
                SHIELDING_LOG_LEVEL="DEBUG",
            )
        ),
        glass := ok(
            seeded.run(
                "view",
                uid,
                "--override",
                "--reason",
                "Police at the door; need the address now",
                "--password-stdin",
                as_user=protector,
                input=stdin_password(protector),
                SHIELDING_LOG_LEVEL="DEBUG",
            )
        ),
        ok(seeded.run("unshield", request_id, "--reason", "risk ended", as_user=REVIEWER, SHIELDING_LOG_LEVEL="DEBUG")),
    ]
    # The shielded view printed only permitted fields; break-glass printed the rest, on stdout only.
    assert CANARY["postcode"] not in results[2].stdout and CANARY["school"] not in results[2].stdout
    assert CANARY["postcode"] in glass.stdout and CANARY["gp"] in glass.stdout
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


# -------------------------------------------------------------------------------- sign-in and sessions


def test_bootstrap_is_refused_once_a_manager_exists(seeded: DevStack, tmp_path: Path) -> None:
    # The seeded stack's first manager came from `users bootstrap`; a second bootstrap changes nothing.
    refused = seeded.run("users", "bootstrap", "second.mgr", "--password-stdin", input=stdin_password("second.mgr"))
    assert_error(refused, "a manager already exists")
    assert_error(seeded.login("second.mgr", credentials=tmp_path / "second.json"), "sign-in failed")
    listed = ok(seeded.run("users", "list", "--json", as_user=MANAGER)).json()["users"]
    assert "second.mgr" not in {u["name"] for u in listed}
    # Without a password on standard input there is nothing to create.
    assert_error(seeded.run("users", "bootstrap", "third.mgr"), "--password-stdin")


def test_login_with_a_wrong_password_says_only_that_it_failed(seeded: DevStack, tmp_path: Path) -> None:
    credentials = tmp_path / "session" / "credentials.json"
    wrong = assert_error(seeded.login(INTAKE, password="not-the-password-at-all", credentials=credentials))
    unknown = assert_error(seeded.login("no.such.person", credentials=credentials))
    assert wrong == unknown == "error: Sign-in failed: the name or password is not right."
    assert not credentials.exists()


def test_the_credentials_file_is_for_its_owner_only(seeded: DevStack, tmp_path: Path) -> None:
    credentials = tmp_path / "fresh" / "credentials.json"
    signed_in = ok(seeded.login(REVIEWER, credentials=credentials))
    assert signed_in.stdout.startswith(f"signed in as {REVIEWER} (reviewer)"), signed_in
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    saved = json.loads(credentials.read_text())
    assert saved["name"] == REVIEWER and saved["api_url"] == seeded.web_url
    assert saved["token"] not in signed_in.stdout + signed_in.stderr + seeded.stdout() + seeded.stderr()
    # Signing in again replaces the file whole, still 0600, and leaves nothing beside it.
    ok(seeded.login(REVIEWER, credentials=credentials))
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert json.loads(credentials.read_text())["token"] != saved["token"]
    assert sorted(p.name for p in credentials.parent.iterdir()) == ["credentials.json"]


async def _age_session(database_url: str, token: str, minutes: int) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        status = await conn.execute(
            "UPDATE sessions SET last_seen_at = last_seen_at - make_interval(mins => $2) WHERE token_digest = $1",
            hashlib.sha256(token.encode()).hexdigest(),
            minutes,
        )
    finally:
        await conn.close()
    return int(status.split()[-1])


def test_not_signed_in_signed_out_or_idle_too_long_is_one_line_saying_to_sign_in(
    seeded: DevStack, tmp_path: Path
) -> None:
    document = tmp_path / "form.pdf"
    document.write_bytes(b"%PDF-1.4 form\n")
    commands = [
        ["view", "CP-1003-RK"],
        ["search", "--family-name", "Kapoor", "--date-of-birth", "2012-11-30", "--json"],
        ["status", "SR-AAAAAAAAAAAA"],
        ["form", "SR-AAAAAAAAAAAA", "--document", str(document)],
        ["audit", "verify"],
        ["directory", "import", str(SAMPLES)],
        ["users", "list"],
    ]
    expected = f"error: {NOT_SIGNED_IN}"
    for args in commands:  # never signed in
        assert assert_error(seeded.run(*args), "shielding login") == expected

    credentials = tmp_path / "ivy" / "credentials.json"
    ok(seeded.login(INTAKE, credentials=credentials))
    kept = tmp_path / "kept-copy.json"
    shutil.copy(credentials, kept)
    ok(run_cli(seeded.data_dir, "view", "CP-1003-RK", credentials=credentials))
    assert ok(run_cli(seeded.data_dir, "logout", credentials=credentials)).stdout.strip() == f"signed out ({INTAKE})"
    assert not credentials.exists()
    assert assert_error(run_cli(seeded.data_dir, "view", "CP-1003-RK", credentials=credentials)) == expected
    # The token itself was ended at the service: a copy of the file signs no one in.
    assert assert_error(run_cli(seeded.data_dir, "view", "CP-1003-RK", credentials=kept)) == expected
    assert ok(run_cli(seeded.data_dir, "logout", credentials=kept)).stdout.startswith("signed out")

    # Idle for longer than the service allows (15 minutes): ended, though nobody signed out.
    idle = tmp_path / "idle" / "credentials.json"
    ok(seeded.login(INTAKE, credentials=idle))
    ok(run_cli(seeded.data_dir, "view", "CP-1003-RK", credentials=idle))
    assert json.loads(idle.read_text())["idle_timeout_minutes"] == 15
    assert asyncio.run(_age_session(seeded.database_url, json.loads(idle.read_text())["token"], 16)) == 1
    for args in commands:
        assert assert_error(run_cli(seeded.data_dir, *args, credentials=idle)) == expected


def test_shielding_actor_changes_nothing(seeded: DevStack, tmp_path: Path) -> None:
    uid = "CP-2001-SA"
    import_child(seeded, tmp_path, uid)
    ack = ok(seeded.run(*request_args(uid), "--json", as_user=INTAKE, SHIELDING_ACTOR=MANAGER)).json()
    entries = ok(seeded.run("audit", "--request", ack["request_id"], "--json", as_user=REVIEWER)).json()["entries"]
    assert {e["actor"] for e in entries if e["action"] in ("received", "shielded")} == {INTAKE}
    # Naming a manager in the environment grants nothing: the signed-in intake officer is refused.
    assert_error(seeded.run("users", "list", as_user=INTAKE, SHIELDING_ACTOR=MANAGER), INTAKE)
    assert_error(seeded.run("audit", "verify", as_user=INTAKE, SHIELDING_ACTOR=REVIEWER), INTAKE)


def test_users_add_list_and_remove(seeded: DevStack, tmp_path: Path) -> None:
    name = "temp.cli"
    assert ok(add_user(seeded, name, "practitioner")).stdout.strip() == f"user {name}: practitioner"
    # A second role for the same account, no password this time (it keeps the one it has).
    ok(seeded.run("users", "add", name, "--role", "reviewer", as_user=MANAGER))
    listed = ok(seeded.run("users", "list", "--json", as_user=MANAGER)).json()
    entry = next(u for u in listed["users"] if u["name"] == name)
    assert entry["roles"] == ["practitioner", "reviewer"] and entry["local"] is True and entry["disabled"] is False
    text = ok(seeded.run("users", "list", as_user=MANAGER)).stdout
    assert any(line.startswith(name) and "practitioner, reviewer" in line for line in text.splitlines()), text
    assert_error(seeded.run("users", "list", as_user=INTAKE), INTAKE, "manager")

    ok(seeded.run("view", "CP-1003-RK", as_user=name))
    removed = ok(seeded.run("users", "remove", name, "--role", "reviewer", "--json", as_user=MANAGER)).json()
    assert removed == {"name": name, "removed": "reviewer"}
    # Still signed in with the role left, and no longer allowed what only the removed one gave.
    ok(seeded.run("view", "CP-1003-RK", as_user=name))
    assert_error(seeded.run("audit", "verify", as_user=name), name)

    removed_all = ok(seeded.run("users", "remove", name, as_user=MANAGER))
    assert removed_all.stdout.strip() == f"user {name}: removed all roles"
    # Every session of theirs ended at once, and they cannot sign in again.
    assert assert_error(seeded.run("view", "CP-1003-RK", as_user=name)) == f"error: {NOT_SIGNED_IN}"
    assert_error(seeded.login(name, credentials=tmp_path / "again.json"), "sign-in failed")
    assert_error(seeded.run("users", "remove", MANAGER, as_user=MANAGER), "no manager")


# ------------------------------------------------------------------------------------------ break-glass


def test_break_glass_shows_the_hidden_details_marked_as_break_glass(
    seeded: DevStack, protector: str, tmp_path: Path
) -> None:
    uid = "CP-2002-BG"
    record = import_child(
        seeded,
        tmp_path,
        uid,
        address={"lines": ["12 Harbour Row", "London"], "postcode": "E14 9ZZ"},
        school="Canal Side Primary",
        gp_practice="Dockside Medical Centre",
    )
    request_shield(seeded, uid)
    override = ["view", uid, "--override", "--reason", "Child missing; police need the address now"]

    # Not child-protection: refused before any warning or record.
    assert_error(seeded.run(*override, as_user=INTAKE), INTAKE, "override")

    # A local account gives the password again; without it, the warning, then a clear refusal.
    refused = seeded.run(*override, as_user=protector)
    assert refused.returncode == 1 and refused.stdout == "", refused
    lines = stderr_lines(refused)
    assert len(lines) == 2 and lines[0].startswith("WARNING: break-glass"), refused
    assert lines[1].startswith("error:") and "--password-stdin" in lines[1], refused
    wrong = seeded.run(*override, "--password-stdin", as_user=protector, input="not-my-password-at-all\n")
    assert wrong.returncode == 1 and wrong.stdout == "", wrong
    assert stderr_lines(wrong)[0].startswith("WARNING: break-glass")
    assert stderr_lines(wrong)[1:] == ["error: Re-authentication failed: the password is not right."], wrong

    shown = ok(seeded.run(*override, "--password-stdin", as_user=protector, input=stdin_password(protector)))
    assert stderr_lines(shown)[0].startswith("WARNING: break-glass"), shown
    assert "withheld" not in shown.stdout, shown
    marked = [line for line in shown.stdout.splitlines() if line.endswith("[break-glass]")]
    labels = [line.split(":")[0] for line in marked]
    assert labels == ["address", "carers", "school", "GP practice", "practitioners"], shown
    for value in ("12 Harbour Row", "E14 9ZZ", record["carers"][0]["name"], "Canal Side Primary", "Dockside Medical"):
        assert value in "\n".join(marked), f"{value!r} not shown\n{shown}"
    assert shown.stdout.splitlines()[5].startswith("SHIELDED:") and "break-glass" in shown.stdout.splitlines()[5]

    again = stdin_password(protector)
    full = ok(seeded.run(*override, "--json", "--password-stdin", as_user=protector, input=again)).json()
    assert set(full) >= PRACTITIONER_KEYS | HIDDEN_KEYS and full["shielded"] is True
    assert full["address"]["postcode"] == "E14 9ZZ" and full["school"] == "Canal Side Primary"
    # Everyone else still sees the record shielded.
    assert "other details are withheld" in ok(seeded.run("view", uid, as_user=INTAKE)).stdout
    entries = ok(seeded.run("audit", "--child", uid, "--json", as_user=MANAGER)).json()["entries"]
    assert [e["actor"] for e in entries if e["action"] == "override-viewed"] == [protector, protector]


# ------------------------------------------------------------------------------------- audit, deadlines


def test_audit_of_a_child_shows_a_refused_request_that_named_it(seeded: DevStack, tmp_path: Path) -> None:
    uid = "CP-2003-RF"
    import_child(seeded, tmp_path, uid)
    objection = request_args(uid, criteria=("objection-in-principle",))
    assert_error(seeded.run(*objection, as_user=INTAKE), "objection")
    entries = ok(seeded.run("audit", "--child", uid, "--json", as_user=REVIEWER)).json()["entries"]
    refused = [e for e in entries if e["action"] == "refused"]
    assert len(refused) == 1, entries
    assert refused[0]["actor"] == INTAKE and uid in refused[0]["details"]["children"]
    text = ok(seeded.run("audit", "--child", uid, as_user=REVIEWER)).stdout
    assert re.search(rf"refused\s+{re.escape(INTAKE)}\s+SR-[A-Z0-9]{{12}}", text), text


def test_a_requests_form_deadline_reads_as_the_end_of_its_last_working_day(seeded: DevStack, tmp_path: Path) -> None:
    uid = "CP-2004-DL"
    import_child(seeded, tmp_path, uid)
    # A call yesterday at 10:00 UTC: its 7th working day is always still ahead.
    called = (datetime.now(UTC) - timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    text = ok(seeded.run(*request_args(uid), "--called-at", called.isoformat(), as_user=INTAKE)).stdout
    due_line = next(line for line in text.splitlines() if line.startswith("form due by:"))
    due = datetime.fromisoformat(due_line.split()[-1])
    assert (due.hour, due.minute) == (0, 0), due_line
    last_day = due - timedelta(days=1)
    wording = f"{_DAYS[last_day.weekday()]} {last_day.day} {_MONTHS[last_day.month - 1]} {last_day.year}"
    assert f"The written form and supporting documents are due by the end of {wording}." in text, text


# ------------------------------------------------------------------------ single sign-on (device code)


class _FakeDeviceService(BaseHTTPRequestHandler):
    """The two device-code endpoints of the service, as agreed: pending twice (428), then signed in."""

    polls: ClassVar[list[dict[str, Any]]] = []
    outcome: ClassVar[tuple[int, dict[str, Any]]] = (200, {})

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/api/auth/device":
            base = f"http://127.0.0.1:{self.server.server_address[1]}/device"
            start = {"handle": "h-123", "user_code": "WDJB-MJHT", "verification_uri": base}
            self._answer(200, {**start, "verification_uri_complete": f"{base}?code=WDJB-MJHT", "interval": 1,
                               "expires_in": 30})  # fmt: skip
        elif self.path == "/api/auth/device/token":
            self.polls.append({"body": json.loads(body), "authorization": self.headers.get("Authorization")})
            if len(self.polls) <= 2:
                self._answer(428, {"detail": "Waiting for you to finish signing in."})
            else:
                self._answer(*self.outcome)
        else:
            self._answer(404, {"detail": "Not Found"})


@pytest.fixture
def device_service() -> Iterator[str]:
    _FakeDeviceService.polls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeDeviceService)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_single_sign_on_shows_the_code_polls_and_keeps_the_session(device_service: str, tmp_path: Path) -> None:
    signed_in = {"name": "sso.person", "roles": ["reviewer"], "token": "tok-sso-1", "idle_timeout_minutes": 15}
    _FakeDeviceService.outcome = (200, signed_in)
    credentials = tmp_path / "sso" / "credentials.json"
    result = ok(run_cli(tmp_path, "login", credentials=credentials, SHIELDING_API_URL=device_service))
    assert f"open {device_service}/device and enter the code WDJB-MJHT" in result.stderr, result
    assert f"{device_service}/device?code=WDJB-MJHT" in result.stderr, result
    assert result.stdout.startswith("signed in as sso.person (reviewer)"), result
    assert [p["body"] for p in _FakeDeviceService.polls] == [{"handle": "h-123"}] * 3
    assert {p["authorization"] for p in _FakeDeviceService.polls} == {None}
    saved = json.loads(credentials.read_text())
    assert (saved["name"], saved["token"], saved["auth_method"]) == ("sso.person", "tok-sso-1", "oidc")
    assert saved["api_url"] == device_service and stat.S_IMODE(credentials.stat().st_mode) == 0o600


def test_single_sign_on_refused_says_why_and_saves_nothing(device_service: str, tmp_path: Path) -> None:
    _FakeDeviceService.outcome = (400, {"detail": "Sign-in failed: the identity provider refused the sign-in."})
    credentials = tmp_path / "sso" / "credentials.json"
    result = run_cli(tmp_path, "login", credentials=credentials, SHIELDING_API_URL=device_service)
    assert result.returncode == 1, result
    assert stderr_lines(result)[-1] == "error: Sign-in failed: the identity provider refused the sign-in."
    assert not credentials.exists()
    assert_error(run_cli(tmp_path, "login", "--password-stdin", SHIELDING_API_URL=device_service), "NAME")
