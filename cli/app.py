"""The `shielding` command: what intake officers, reviewers, practitioners and operations staff run.

Every command exits 0 on success and 1 with a one-line message on any error; no stack trace reaches a user.
Commands that print records accept --json (one JSON object on stdout). Staff commands are clients of the
web service (`cli.context`), acting as whoever signed in with `shielding login` (`cli.auth`); the commands
that run on a server (`dev`, `worker`, `migrate`, `serve`, `certs generate`, `users bootstrap`) and
`deadlines` are local. The commands live by audience in `cli.operations`, `cli.auth`, `cli.intake`,
`cli.reviews`, `cli.directory`, `cli.contact`, `cli.audit` and `cli.users`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer
from typer._click.exceptions import ClickException  # typer vendors click; its usage errors subclass this

from cli.errors import describe_error, fail, one_line
from shielding.settings import get_settings

app = typer.Typer(
    help="The shielding service: shield children's records, take forms, review and unshield.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
directory_app = typer.Typer(help="The child directory.", no_args_is_help=True)
users_app = typer.Typer(help="Who may do what.", no_args_is_help=True)
audit_app = typer.Typer(help="The audit log.", invoke_without_command=True)
app.add_typer(directory_app, name="directory")
app.add_typer(users_app, name="users")
app.add_typer(audit_app, name="audit")

P = ParamSpec("P")
T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def run(command: Callable[P, T]) -> Callable[P, T]:
    """Run a command, turning every failure into one clear line on stderr."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        from shielding.log import configure_logging

        settings = get_settings()
        # Commands speak to people: only warnings and errors are logged unless asked otherwise.
        configure_logging(settings.log_level or "WARNING")
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except BaseException as err:  # noqa: BLE001 - every error becomes one line, never a trace
            if settings.debug:
                import traceback

                traceback.print_exc()
            raise fail(describe_error(err)) from None

    return wrapper


def main() -> None:
    """Entry point. Exits through os._exit once output is flushed: the Temporal client's native threads can
    abort an ordinary interpreter shutdown (sdk-python#300), which would turn a success into a crash."""
    import os

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


# The command modules register themselves on `app` when imported; last, so `app` exists when they ask for it.
from cli import access, audit, auth, contact, directory, intake, messages, operations, reviews, users  # noqa: E402, F401
