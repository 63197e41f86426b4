"""Child records for tests: each with unique identifiers and a family name no other test shares."""

from __future__ import annotations

import uuid
from datetime import date

from shielding.domain import Address, Carer, ChildRecord, Gender


def make_child(
    *,
    uid: str | None = None,
    given_name: str = "Amelia",
    family_name: str | None = None,
    date_of_birth: date = date(2015, 3, 14),
    gender: Gender = Gender.FEMALE,
    postcode: str = "NW8 8LF",
    school: str = "St Peter's Primary",
    aliases: list[str] | None = None,
) -> ChildRecord:
    # A distinct family name per child, so a new record never matches an earlier test's shielded child.
    suffix = "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:8])
    return ChildRecord(
        uid=uid or f"C-{uuid.uuid4().hex[:12]}",
        given_name=given_name,
        family_name=family_name or f"Hartley-{suffix}",
        aliases=aliases or [],
        gender=gender,
        date_of_birth=date_of_birth,
        address=Address(lines=["12 Frampton Street", "London"], postcode=postcode),
        carers=[Carer(name="Joan Hartley", relationship="mother", phone="020 7946 0000")],
        school=school,
        gp_practice="Lisson Grove Health Centre",
        practitioners=["Health visitor: P. Okafor"],
    )
