"""Reading a form's documents from disk: every document present, non-empty and within the size limit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from starter.errors import Refusal


@dataclass
class Document:
    filename: str
    content: bytes


def check_document(filename: str, size: int, max_bytes: int) -> None:
    """The limits every uploaded document meets, whichever front end it arrives through."""
    if size == 0:
        raise Refusal(f"The document {filename!r} is empty; nothing was recorded.")
    if size > max_bytes:
        raise Refusal(
            f"The document {filename!r} is {size:,} bytes, over the {max_bytes:,}-byte limit; nothing was recorded."
        )


def _unreadable(path: Path, err: OSError) -> Refusal:
    return Refusal(f"The document {path.name!r} cannot be read ({err.strerror or 'unreadable'}).")


def read_documents(paths: Sequence[str | Path], max_bytes: int) -> list[Document]:
    if not paths:
        raise Refusal("A form needs at least one document (the completed form, then any supporting documents).")
    documents = []
    for raw in paths:
        path = Path(raw)
        try:
            if not path.is_file():
                raise Refusal(f"The document {path.name!r} cannot be found or is not a file.")
            size = path.stat().st_size
        except OSError as err:
            raise _unreadable(path, err) from None
        check_document(path.name, size, max_bytes)
        try:
            content = path.read_bytes()
        except OSError as err:
            raise _unreadable(path, err) from None
        documents.append(Document(filename=path.name, content=content))
    return documents
