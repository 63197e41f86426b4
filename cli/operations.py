"""Commands for operations staff: the local stack, the worker, the web service, migrations, certificates for
Temporal, deadlines. They run where the service runs, not through it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from cli.app import JsonOption, app
from cli.errors import fail
from cli.render import emit, iso
from shielding import deadlines
from shielding.settings import ConfigurationError, get_settings


@app.command()
def dev() -> None:
    """Run the whole service locally (Temporal dev server and Web UI, PostgreSQL, migrations, worker)."""
    from shielding.devstack import run_dev_stack

    try:
        code = run_dev_stack(get_settings())
    except ConfigurationError as err:
        raise fail(str(err)) from None
    raise typer.Exit(code)


@app.command()
def worker() -> None:
    """Run the worker (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, DATABASE_URL)."""
    from worker.main import run_worker

    try:
        asyncio.run(run_worker(get_settings()))
    except ConfigurationError as err:
        raise fail(str(err)) from None


@app.command()
def migrate() -> None:
    """Apply database migrations (DATABASE_URL)."""
    from shielding import store

    try:
        applied = store.migrate(get_settings().resolved_database_url())
    except ConfigurationError as err:
        raise fail(str(err)) from None
    except Exception as err:  # noqa: BLE001
        raise fail(f"migration failed ({type(err).__name__}); the database was left as it was") from None
    typer.echo(f"migrations applied: {len(applied)}" + (f" ({', '.join(applied)})" if applied else ""))


@app.command()
def serve(
    port: Annotated[int | None, typer.Option(help="Port to listen on (default SHIELDING_WEB_PORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default SHIELDING_WEB_HOST).")] = None,
) -> None:
    """Run the web service: the API the staff commands use, behind sign-in (DATABASE_URL, TEMPORAL_ADDRESS)."""
    from web.server import serve as serve_web

    try:
        serve_web(get_settings(), host=host, port=port)
    except ConfigurationError as err:
        raise fail(str(err)) from None


certs_app = typer.Typer(help="Certificates for mutual TLS to Temporal.", no_args_is_help=True)
app.add_typer(certs_app, name="certs")


@certs_app.command("generate")
def certs_generate(
    out: Annotated[Path, typer.Option(help="Directory to write the authority and certificates into.")],
    server_name: Annotated[
        list[str] | None,
        typer.Option(
            help="A name (or IP address) of the Temporal server; repeat for more. Default: temporal, "
            "localhost, 127.0.0.1."
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="How long the server and client certificates are valid.")] = 397,
    force: Annotated[bool, typer.Option(help="Replace an existing set (a new authority).")] = False,
) -> None:
    """A private CA, the Temporal server's certificate and client certificates (worker, web, ui, admin)."""
    from shielding import certs

    try:
        issued = certs.generate(out, server_names=server_name or certs.DEFAULT_SERVER_NAMES, days=days, force=force)
    except ConfigurationError as err:
        raise fail(str(err)) from None
    except OSError as err:
        raise fail(f"cannot write the certificates under {out}: {err.strerror or type(err).__name__}") from None
    typer.echo(f"authority: {out / 'ca.pem'} (keep {out / 'ca-key.pem'} with operations; never mount it)")
    for item in issued:
        typer.echo(f"{item.name + ':':<10} {item.cert}  {item.key}")


@app.command("deadlines")
def deadlines_command(
    called_at: Annotated[str, typer.Option(help="Time of the call, ISO 8601 with offset.")],
    shielded_at: Annotated[str | None, typer.Option(help="Time of shielding (defaults to --called-at).")] = None,
    as_json: JsonOption = False,
) -> None:
    """The form deadline and review dates for a call (no server needed)."""
    from starter import Refusal, parse_instant

    try:
        called = parse_instant(called_at, "time of the call")
        shielded = parse_instant(shielded_at, "time of shielding") if shielded_at else called
        form_due = deadlines.form_due_at(called)
        payload = {
            "form_due_at": iso(form_due),
            "review_7_day_at": iso(deadlines.review_7_day_at(shielded)),
            "review_6_month_at": iso(deadlines.review_6_month_at(shielded)),
        }
    except (Refusal, ValueError, OverflowError) as err:
        raise fail(str(err) if isinstance(err, Refusal) else f"cannot calculate deadlines: {err}") from None
    emit(
        as_json,
        payload,
        [
            f"form due by:     {payload['form_due_at']}  ({deadlines.describe(form_due)})",
            f"7-day review:    {payload['review_7_day_at']}",
            f"6-month review:  {payload['review_6_month_at']}",
        ],
    )
