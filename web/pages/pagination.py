"""The Design System's numbered pagination for a list served a page at a time (the queue, the forms due)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def page_count(total: int, page_size: int) -> int:
    return max(1, -(-total // page_size))


def numbered(page: int, total: int, page_size: int, href: Callable[[int], str]) -> dict[str, Any] | None:
    """govukPagination's parameters: the first, the last and two either side of this page, gaps as ellipses;
    None when everything fits on one page."""
    pages = page_count(total, page_size)
    if pages == 1:
        return None
    items: list[dict[str, Any]] = []
    for number in range(1, pages + 1):
        if number not in (1, pages) and abs(number - page) > 2:
            continue
        if items and number - items[-1]["number"] > 1:
            items.append({"ellipsis": True, "number": 0})
        items.append({"number": number, "href": href(number), "current": number == page})
    return {
        "items": items,
        "previous": {"href": href(page - 1)} if page > 1 else None,
        "next": {"href": href(page + 1)} if page < pages else None,
    }
