"""The staff tasks: what the start page lists and the service navigation links to, each behind its permission.

A task is shown only to someone whose roles allow its action (`shielding.access.PERMISSIONS`), so nobody is
offered a link they would be refused. The page behind each task must still check the permission itself
(`web.pages.session.may(action)`): hiding a link is not access control.

The next pages fill in the paths below; until a page exists its link answers 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shielding.access import PERMISSIONS


@dataclass(frozen=True)
class Task:
    action: str  # a key of shielding.access.PERMISSIONS
    title: str  # the link on the start page: what the person will do
    nav_label: str  # the short label in the service navigation
    href: str
    description: str

    def allowed_for(self, roles: Iterable[str]) -> bool:
        return bool(PERMISSIONS[self.action] & set(roles))


TASKS: tuple[Task, ...] = (
    Task(
        "request",
        "Take a shielding request",
        "New request",
        "/requests/new",
        "Record a request made by phone. The child's record is shielded before you finish the call.",
    ),
    Task(
        "form",
        "Record a written form",
        "Forms due",
        "/requests/awaiting-form",
        "Add the written form and supporting documents to a request that is waiting for them.",
    ),
    Task(
        "review",
        "Review shielded records",
        "Reviews",
        "/reviews",
        "Decide the reviews that are due: keep the record shielded, or end the shielding with a reason.",
    ),
    Task(
        "status",
        "Find a shielding request",
        "Requests",
        "/requests",
        "See where a request has got to: its stage, deadlines, reviews and history.",
    ),
    Task(
        "search",
        "Find a child's record",
        "Children",
        "/children",
        "Search the child directory. A shielded record shows only the child's names, gender and date of birth.",
    ),
    Task(
        "broker contact",
        "Broker contact with shielded children",
        "Contact requests",
        "/contact-requests",
        "Take a request from staff to contact a shielded child's family, see what the record withholds, and record "
        "the outcome.",
    ),
    Task(
        "audit",
        "Check the audit log",
        "Audit",
        "/audit",
        "See every action taken on a request or a child's record, and check the log has not been changed.",
    ),
    Task(
        "import",
        "Import directory records",
        "Import",
        "/directory/import",
        "Add or update children's records in the directory from a file.",
    ),
    Task(
        "users",
        "Manage staff accounts",
        "Staff",
        "/users",
        "Add staff, give or remove their roles, and end their access.",
    ),
)


# What each action lets someone do, for the access-denied page ("Only a reviewer can review shielded records").
ACTION_TEXT: dict[str, str] = {
    "request": "take shielding requests",
    "form": "record written forms",
    "review": "review shielded records",
    "unshield": "end the shielding of a record",
    "status": "see shielding requests",
    "view": "see children's records",
    "search": "search the child directory",
    "audit": "see the audit log",
    "import": "import directory records",
    "override": "see the withheld details of a shielded record",
    "users": "manage staff accounts",
    "decode payloads": "read workflow data in the Temporal Web UI",
    "ask contact": "ask the team to broker contact with a shielded child",
    "broker contact": "broker contact with shielded children",
    "access log": "see who viewed a child's record",
}


def tasks_for(roles: Iterable[str]) -> list[Task]:
    """The tasks these roles allow, in the order of `TASKS`."""
    held = set(roles)
    return [task for task in TASKS if task.allowed_for(held)]
