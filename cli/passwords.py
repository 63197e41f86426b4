"""Reading a password: from standard input with --password-stdin (scripts), else typed at a terminal, unechoed.

A password is never an option's value: it would sit in the shell history and in every `ps` listing.
"""

from __future__ import annotations

import getpass
import sys

from cli.errors import CommandError

MAX_PASSWORD_CHARS = 1000


def read_password(from_stdin: bool, *, needed_for: str, prompt_at_terminal: bool = True) -> str:
    """The first line of standard input with --password-stdin; else, at a terminal, asked for unechoed."""
    if from_stdin:
        line = sys.stdin.readline(MAX_PASSWORD_CHARS + 2) if sys.stdin is not None else ""
        password = line.removesuffix("\n").removesuffix("\r")
    elif prompt_at_terminal and sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass("password: ")
    else:
        raise CommandError(f"{needed_for} needs a password: give it on standard input with --password-stdin")
    if not password:
        raise CommandError(f"{needed_for} needs a password, and none was given")
    if len(password) > MAX_PASSWORD_CHARS:
        raise CommandError(f"a password can have at most {MAX_PASSWORD_CHARS} characters")
    return password
