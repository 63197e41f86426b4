"""The `shielding` command: what intake officers, reviewers, practitioners and operations staff run.

Every command exits 0 on success and 1 with a one-line message on any error; no stack trace reaches a user.
Commands that print records accept --json (one JSON object on stdout).
"""

from __future__ import annotations

import asyncio
import functools
import getpass
import json
import os
import sys
from collections.abc import Callable, Coroutine
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from typer._click.exceptions import ClickException  # typer vendors click; its usage errors subclass this

from shielding import deadlines
from shielding.domain import REQUEST_ID_PATTERN
from shielding.settings import ConfigurationError, Settings, get_settings

app = typer.Typer(
    help="The shielding service: shield children's records, take forms, review and unshield.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
directory_app = typer.Typer(help="The child directory.", no_args_is_help=True)
users_app = typer.Typer(help="Who may do what.", no_args_is_help=True)
app.add_typer(directory_app, name="directory")
app.add_typer(users_app, name="users")

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


class CommandError(Exception):
    """A failure to report as one line."""


def one_line(message: str) -> str:
    """A message as one printable line: a newline or control character from the input is shown escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in message)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(code)


def run(coro_fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command, turning every failure into one clear line on stderr."""

    @functools.wraps(coro_fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        from shielding.log import configure_logging

        # Commands speak to people: only warnings and errors are logged unless asked otherwise.
        configure_logging(os.environ.get("SHIELDING_LOG_LEVEL", "WARNING"))
        try:
            return asyncio.run(coro_fn(*args, **kwargs))
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BaseException as err:  # noqa: BLE001 - every error becomes one line, never a trace
            if os.environ.get("SHIELDING_DEBUG") == "1":
                import traceback

                traceback.print_exc()
            fail(describe_error(err))

    return wrapper


def describe_error(err: BaseException) -> str:
    import asyncpg
    from temporalio.service import RPCError

    from shielding.access import AccessDenied
    from shielding.importer import ImportRefused
    from starter.intake import IntakeTimeout, Refusal

    if isinstance(err, Refusal | CommandError | ConfigurationError | AccessDenied | ImportRefused | IntakeTimeout):
        return str(err)
    if isinstance(err, ValidationError):
        return "invalid input: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5]
        )
    if isinstance(err, OSError | asyncpg.PostgresConnectionError) and not isinstance(err, FileNotFoundError):
        return "the directory database cannot be reached; is `shielding dev` running, or DATABASE_URL set?"
    if isinstance(err, FileNotFoundError):
        return f"file not found: {Path(err.filename or '').name or 'unknown'}"
    if isinstance(err, RPCError):
        return "the workflow service cannot be reached or refused the call; is `shielding dev` running?"
    if isinstance(err, RuntimeError) and "Failed client connect" in str(err):
        return "the workflow service cannot be reached; is `shielding dev` running, or TEMPORAL_ADDRESS set?"
    if isinstance(err, asyncpg.PostgresError):
        return "the directory database refused the operation"
    if isinstance(err, TimeoutError):
        return "timed out waiting for the service; the action may still complete: check `shielding status`"
    return f"unexpected failure ({type(err).__name__}); nothing further was changed by this command"


def emit(as_json: bool, payload: dict[str, Any], lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(payload, default=_json_default, sort_keys=False))
    else:
        for line in lines:
            typer.echo(line)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def iso(value: datetime | None) -> str | None:
    """An instant as people read it here: London time with its UTC offset, to the second."""
    return deadlines.to_london(value).isoformat(timespec="seconds") if value else None


def current_actor(settings: Settings) -> str:
    return settings.actor or getpass.getuser()


class Context:
    """Connections a command needs, opened lazily and closed at the end."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: Any = None
        self._client: Any = None

    async def pool(self) -> Any:
        if self._pool is None:
            from shielding import store

            self._pool = await store.create_pool(self.settings.resolved_database_url(), max_size=2)
        return self._pool

    async def client(self) -> Any:
        if self._client is None:
            from shielding.temporal import connect

            self._client = await asyncio.wait_for(connect(self.settings), timeout=15)
        return self._client

    async def service(self) -> Any:
        from starter.intake import ShieldingService

        return ShieldingService(
            await self.client(),
            await self.pool(),
            task_queue=self.settings.task_queue,
            max_document_bytes=self.settings.max_document_bytes,
            intake_timeout=self.settings.intake_timeout_seconds,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> Context:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def authorise(ctx: Context, action: str, *, request_id: str | None = None, child_uid: str | None = None) -> str:
    from shielding import access

    actor = current_actor(ctx.settings)
    await access.require(await ctx.pool(), actor, action, request_id=request_id, child_uid=child_uid)
    return actor


# ------------------------------------------------------------------------------------------- operations


@app.command()
def dev() -> None:
    """Run the whole service locally (Temporal dev server and Web UI, PostgreSQL, migrations, worker)."""
    from shielding.devstack import run_dev_stack

    try:
        code = run_dev_stack(get_settings())
    except ConfigurationError as err:
        fail(str(err))
    raise typer.Exit(code)


@app.command()
def worker() -> None:
    """Run the worker (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, DATABASE_URL)."""
    from worker.main import run_worker

    try:
        asyncio.run(run_worker(get_settings()))
    except ConfigurationError as err:
        fail(str(err))


@app.command()
def migrate() -> None:
    """Apply database migrations (DATABASE_URL)."""
    from shielding import store

    try:
        applied = store.migrate(get_settings().resolved_database_url())
    except ConfigurationError as err:
        fail(str(err))
    except Exception as err:  # noqa: BLE001
        fail(f"migration failed ({type(err).__name__}); the database was left as it was")
    typer.echo(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else ""))


@app.command("codec-server")
def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
) -> None:
    """Serve the Temporal Web UI's remote codec endpoint, for holders of the codec token only."""
    from shielding.codec_server import serve

    try:
        serve(get_settings(), host=host, port=port)
    except ConfigurationError as err:
        fail(str(err))


# ------------------------------------------------------------------------------------------- directory


@directory_app.command("import")
@run
async def directory_import(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one child a line.")],
    as_json: JsonOption = False,
) -> None:
    """Load or update child records from JSON Lines; all or nothing."""
    from shielding import store
    from shielding.importer import parse_children

    records = parse_children(file)
    async with Context(get_settings()) as ctx:
        actor = await authorise(ctx, "import")
        result = await store.import_children(await ctx.pool(), records, actor=actor)
    emit(
        as_json,
        result.model_dump(),
        [f"imported {result.imported} records ({result.created} new, {result.updated} updated)"]
        + [f"linked duplicate of a shielded child, now shielded: {uid}" for uid in result.linked_duplicates],
    )


# ----------------------------------------------------------------------------------------------- intake


@app.command()
@run
async def request(
    child: Annotated[list[str], typer.Option("--child", help="Child uid (repeat for siblings).")],
    criterion: Annotated[list[str], typer.Option("--criterion", help="Criterion code (repeatable).")],
    reason: Annotated[str, typer.Option(help="The reason, in the caller's words.")],
    requestor_type: Annotated[str, typer.Option(help="professional or public.")],
    requestor_name: Annotated[str, typer.Option(help="Who is asking.")],
    requestor_organisation: Annotated[str | None, typer.Option(help="Organisation (professionals).")] = None,
    requestor_phone: Annotated[str | None, typer.Option(help="Phone number.")] = None,
    requestor_email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    called_at: Annotated[str | None, typer.Option(help="Time of the call, ISO 8601 with offset.")] = None,
    other_description: Annotated[
        str | None, typer.Option(help="Description of the circumstances for other-significant-harm.")
    ] = None,
    request_id: Annotated[
        str | None, typer.Option(help="Repeat an unconfirmed intake under the request id it was given.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Take a shielding request by phone; returns once every child is shielded."""
    from starter.intake import IntakeDraft

    draft = IntakeDraft(
        children=child,
        criteria=criterion,
        other_description=other_description,
        reason=reason,
        requestor_type=requestor_type,
        requestor_name=requestor_name,
        requestor_organisation=requestor_organisation,
        requestor_phone=requestor_phone,
        requestor_email=requestor_email,
        called_at=called_at,
    )
    async with Context(get_settings()) as ctx:
        actor = await authorise(ctx, "request")
        service = await ctx.service()
        if request_id is not None and not REQUEST_ID_PATTERN.match(request_id):
            raise CommandError(f"{request_id!r} is not a shielding request id (they look like SR-ABCDEFGH2345)")
        ack = await service.submit_request(draft, actor=actor, request_id=request_id)
    payload = {
        "request_id": ack.request_id,
        "stage": ack.stage.value,
        "children": [c.model_dump(mode="json") for c in ack.children],
        "form_due_at": iso(ack.form_due_at),
        "review_7_day_at": iso(ack.review_7_day_at),
        "review_6_month_at": iso(ack.review_6_month_at),
        "message": ack.message,
    }
    lines = [f"request {ack.request_id}: {ack.stage.value}", ack.message]
    for c in ack.children:
        note = f" (already shielded under {c.existing_request_id})" if c.existing_request_id else ""
        lines.append(f"  child {c.uid}: {'shielded' if c.shielded else 'not shielded'}{note}")
    if ack.form_due_at:
        lines += [
            f"form due by:     {iso(ack.form_due_at)}",
            f"7-day review:    {iso(ack.review_7_day_at)}",
            f"6-month review:  {iso(ack.review_6_month_at)}",
        ]
    emit(as_json, payload, lines)


@app.command()
@run
async def form(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    document: Annotated[list[Path], typer.Option("--document", help="The form and supporting documents.")],
    as_json: JsonOption = False,
) -> None:
    """Record the written form and its supporting documents."""
    async with Context(get_settings()) as ctx:
        actor = await authorise(ctx, "form", request_id=request_id)
        outcome = await (await ctx.service()).submit_form(request_id, document, actor=actor)
    payload = {"request_id": request_id, **outcome.model_dump(mode="json"), "received_at": iso(outcome.received_at)}
    emit(as_json, payload, [outcome.message])


@app.command()
@run
async def review(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    approve: Annotated[bool, typer.Option("--approve", help="Keep the record shielded.")] = False,
    unshield: Annotated[bool, typer.Option("--unshield", help="Lift the shield (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required to unshield).")] = None,
    as_json: JsonOption = False,
) -> None:
    """A reviewer's decision on a review that has fallen due."""
    if approve == unshield:
        raise CommandError("choose exactly one of --approve or --unshield")
    if unshield and not (reason or "").strip():
        raise CommandError("--unshield needs --reason")
    async with Context(get_settings()) as ctx:
        actor = await authorise(ctx, "review", request_id=request_id)
        outcome = await (await ctx.service()).decide_review(request_id, approve=approve, reason=reason, actor=actor)
    payload = {
        "request_id": request_id,
        **outcome.model_dump(mode="json"),
        "next_review_at": iso(outcome.next_review_at),
    }
    emit(as_json, payload, [outcome.message])


@app.command("unshield")
@run
async def unshield_command(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    reason: Annotated[str, typer.Option(help="Why the shield is no longer needed.")],
    as_json: JsonOption = False,
) -> None:
    """Lift the shield because circumstances changed; ends the lifecycle."""
    async with Context(get_settings()) as ctx:
        actor = await authorise(ctx, "unshield", request_id=request_id)
        outcome = await (await ctx.service()).unshield(request_id, reason=reason, actor=actor)
    emit(as_json, {"request_id": request_id, **outcome.model_dump(mode="json")}, [outcome.message])


@app.command()
@run
async def status(
    request_id: Annotated[str, typer.Argument(help="The shielding request id.")],
    as_json: JsonOption = False,
) -> None:
    """Stage, deadlines and decisions so far."""
    async with Context(get_settings()) as ctx:
        await authorise(ctx, "status", request_id=request_id)
        st = await (await ctx.service()).status(request_id)
    payload = st.model_dump(mode="json")
    for key in (
        "called_at",
        "shielded_at",
        "form_due_at",
        "form_received_at",
        "next_review_at",
        "review_due_since",
    ):
        payload[key] = iso(getattr(st, key))
    lines = [
        f"request {st.request_id}: {st.stage.value}",
        f"children:        {', '.join(st.children) or '-'}",
        f"shielded at:     {iso(st.shielded_at) or '-'}",
        f"form due by:     {iso(st.form_due_at) or '-'}"
        + (f" (received {iso(st.form_received_at)})" if st.form_received_at else ""),
        f"next review:     {iso(st.next_review_at) or '-'}"
        + (f" ({st.next_review_kind.value})" if st.next_review_kind else ""),
    ]
    if st.review_due_since:
        lines.append(f"review due since {iso(st.review_due_since)}; reminders sent: {st.reminders_sent}")
    for r in st.reviews:
        lines.append(
            f"  {r.kind.value} review: {r.decision.value if r.decision else '-'} by {r.actor} at {iso(r.decided_at)}"
        )
    if st.closed_reason:
        lines.append(f"closed: {st.closed_reason}")
    emit(as_json, payload, lines)


# ------------------------------------------------------------------------------------------- reading


def _record_lines(record: dict[str, Any]) -> list[str]:
    lines = [
        f"uid:            {record['uid']}",
        f"name:           {record['given_name']} {record['family_name']}",
        f"aliases:        {', '.join(record.get('aliases') or []) or '-'}",
        f"gender:         {record['gender']}",
        f"date of birth:  {record['date_of_birth']}",
    ]
    if record.get("shielded"):
        lines.append("SHIELDED: other details are withheld. Contact the Integrated Working Team to reach this child.")
        return lines
    address = record.get("address") or {}
    lines += [
        f"address:        {', '.join(address.get('lines', []))} {address.get('postcode') or ''}".rstrip(),
        "carers:         "
        + (
            "; ".join(f"{c.get('name', '')} ({c.get('relationship') or '-'})" for c in record.get("carers") or [])
            or "-"
        ),
        f"school:         {record.get('school') or '-'}",
        f"GP practice:    {record.get('gp_practice') or '-'}",
    ]
    return lines


@app.command()
@run
async def view(
    uid: Annotated[str, typer.Argument(help="The child's unique identifier.")],
    override: Annotated[bool, typer.Option("--override", help="Break-glass: show hidden details once.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why the override is needed (required with --override).")] = None,
    as_json: JsonOption = False,
) -> None:
    """What a practitioner sees of a child's record."""
    from shielding import store

    async with Context(get_settings()) as ctx:
        if override:
            from shielding import access

            if not (reason or "").strip():
                raise CommandError("--override needs --reason")
            actor = current_actor(ctx.settings)
            record = await access.override_view(await ctx.pool(), actor, uid, reason or "")
            typer.echo("WARNING: break-glass override. This view is audited and the managers are alerted.", err=True)
        else:
            await authorise(ctx, "view", child_uid=uid)
            record = await store.view_child(await ctx.pool(), uid)
    if record is None:
        raise CommandError(f"no child in the directory has the identifier {uid}")
    emit(as_json, record, _record_lines(record))


@app.command()
@run
async def search(
    given_name: Annotated[str | None, typer.Option(help="Given name or alias.")] = None,
    family_name: Annotated[str | None, typer.Option(help="Family name or alias.")] = None,
    date_of_birth: Annotated[str | None, typer.Option(help="YYYY-MM-DD.")] = None,
    gender: Annotated[str | None, typer.Option(help="female, male, other or unknown.")] = None,
    postcode: Annotated[str | None, typer.Option(help="Postcode (never matches a shielded record).")] = None,
    school: Annotated[str | None, typer.Option(help="School (never matches a shielded record).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Find children; a shielded record is found only through the fields it shows."""
    from shielding import store

    if not any([given_name, family_name, date_of_birth, gender, postcode, school]):
        raise CommandError("give at least one search field")
    dob = None
    if date_of_birth:
        try:
            dob = date.fromisoformat(date_of_birth)
        except ValueError:
            raise CommandError(f"date of birth {date_of_birth!r} is not a date (YYYY-MM-DD)") from None
    if gender and gender not in {"female", "male", "other", "unknown"}:
        raise CommandError("gender must be female, male, other or unknown")
    async with Context(get_settings()) as ctx:
        await authorise(ctx, "search")
        results = await store.search_children(
            await ctx.pool(),
            given_name=given_name,
            family_name=family_name,
            date_of_birth=dob,
            gender=gender,
            postcode=postcode,
            school=school,
        )
    lines = [f"{len(results)} found"]
    for r in results:
        lines.append(
            f"  {r['uid']}  {r['given_name']} {r['family_name']}  {r['date_of_birth']}  {r['gender']}"
            + ("  SHIELDED" if r["shielded"] else "")
        )
    emit(as_json, {"results": results}, lines)


audit_app = typer.Typer(help="The audit log.", invoke_without_command=True)
app.add_typer(audit_app, name="audit")


@audit_app.callback()
def audit(
    ctx: typer.Context,
    request_id: Annotated[str | None, typer.Option("--request", help="A request id.")] = None,
    child: Annotated[str | None, typer.Option("--child", help="A child uid.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The log of every action on a request or a child (`audit verify` checks the hash chain)."""
    if ctx.invoked_subcommand is not None:
        return
    _audit(request_id, child, as_json)


@run
async def _audit(request_id: str | None, child: str | None, as_json: bool) -> None:
    from shielding import store

    if (request_id is None) == (child is None):
        raise CommandError("give exactly one of --request REQUEST_ID or --child UID")
    async with Context(get_settings()) as ctx:
        await authorise(ctx, "audit", request_id=request_id, child_uid=child)
        entries = await store.audit_entries(await ctx.pool(), request_id=request_id, child_uid=child)
    for e in entries:
        e["at"] = iso(datetime.fromisoformat(e["at"]))
        e.pop("entry_hash", None)
        e.pop("prev_hash", None)
    lines = [
        f"{e['at']}  {e['action']:<16} {e['actor']:<18} {e['request_id'] or '-':<16} "
        f"{e['child_uid'] or '':<16} {e['reason'] or ''}"
        for e in entries
    ] or ["no entries"]
    emit(as_json, {"entries": entries}, lines)


@audit_app.command("verify")
@run
async def audit_verify(as_json: JsonOption = False) -> None:
    """Check the audit log's hash chain; names the first broken entry."""
    from shielding.audit_chain import verify_chain

    async with Context(get_settings()) as ctx:
        await authorise(ctx, "audit")
        result = await verify_chain(await ctx.pool())
    emit(as_json, result.model_dump(), [result.message])
    if not result.intact:
        raise typer.Exit(1)


@app.command("deadlines")
def deadlines_command(
    called_at: Annotated[str, typer.Option(help="Time of the call, ISO 8601 with offset.")],
    shielded_at: Annotated[str | None, typer.Option(help="Time of shielding (defaults to --called-at).")] = None,
    as_json: JsonOption = False,
) -> None:
    """The form deadline and review dates for a call (no server needed)."""
    from starter.intake import Refusal, parse_instant

    try:
        called = parse_instant(called_at, "time of the call")
        shielded = parse_instant(shielded_at, "time of shielding") if shielded_at else called
        payload = {
            "form_due_at": iso(deadlines.form_due_at(called)),
            "review_7_day_at": iso(deadlines.review_7_day_at(shielded)),
            "review_6_month_at": iso(deadlines.review_6_month_at(shielded)),
        }
    except (Refusal, ValueError, OverflowError) as err:
        fail(str(err) if isinstance(err, Refusal) else f"cannot calculate deadlines: {err}")
    emit(
        as_json,
        payload,
        [
            f"form due by:     {payload['form_due_at']}  ({deadlines.describe(deadlines.form_due_at(called))})",
            f"7-day review:    {payload['review_7_day_at']}",
            f"6-month review:  {payload['review_6_month_at']}",
        ],
    )


@users_app.command("add")
@run
async def users_add(
    name: Annotated[str, typer.Argument(help="The actor name (what SHIELDING_ACTOR holds).")],
    role: Annotated[str, typer.Option(help="intake, reviewer, manager, practitioner or child-protection.")],
    as_json: JsonOption = False,
) -> None:
    """Add a user or change their role."""
    from shielding import access

    async with Context(get_settings()) as ctx:
        await access.add_user(await ctx.pool(), name, role, by=current_actor(ctx.settings))
    emit(as_json, {"name": name, "role": role}, [f"user {name}: {role}"])


def main() -> None:
    """Entry point. Exits through os._exit once output is flushed: the Temporal client's native threads can
    abort an ordinary interpreter shutdown (sdk-python#300), which would turn a success into a crash."""
    code = 0
    try:
        result = app(standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except ClickException as err:
        # Usage errors (a missing option, an unknown command) as one line, like every other error.
        if err.format_message().strip():  # empty when no arguments were given and help was shown
            typer.echo(f"error: {one_line(err.format_message())} (see --help)", err=True)
        code = err.exit_code
    except typer.Exit as err:
        code = err.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except Exception as err:  # noqa: BLE001 - the long-running commands (dev, worker): still one line
        typer.echo(f"error: {one_line(describe_error(err))}", err=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
