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
    address_line: str | None = None,
    carer_name: str | None = None,
) -> ChildRecord:
    # A distinct family name per child, so a new record never matches an earlier test's shielded child; and a
    # distinct first address line and carer, so no two children share an address or a carer (co-residents are
    # listed at intake, and a shielded child's address is withheld on every record sharing it) unless a test
    # says so with `address_line` and `carer_name`.
    suffix = "".join(chr(ord("a") + int(ch, 16) % 26) for ch in uuid.uuid4().hex[:8])
    return ChildRecord(
        uid=uid or f"C-{uuid.uuid4().hex[:12]}",
        given_name=given_name,
        family_name=family_name or f"Hartley-{suffix}",
        aliases=aliases or [],
        gender=gender,
        date_of_birth=date_of_birth,
        address=Address(lines=[address_line or f"Flat {suffix}, 12 Frampton Street", "London"], postcode=postcode),
        carers=[Carer(name=carer_name or f"Joan Hartley-{suffix}", relationship="mother", phone="020 7946 0000")],
        school=school,
        gp_practice="Lisson Grove Health Centre",
        practitioners=["Health visitor: P. Okafor"],
    )
