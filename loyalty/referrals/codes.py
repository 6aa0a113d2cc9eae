"""Referral codes and links: issued on first use, read aloud or typed by hand, and the
member a code points to (a merged member's survivor)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from loyalty.errors import InvalidInput
from loyalty.infrastructure import db
from loyalty.settings import get_settings

# No 0/O, 1/I/L or U: a code read aloud or copied by hand comes out right.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 8


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


def normalise_code(raw: str, field: str = "referral_code") -> str:
    code = raw.strip().upper().replace("-", "").replace(" ", "")
    if len(code) != CODE_LENGTH or any(c not in ALPHABET for c in code):
        raise InvalidInput(
            f"is not a referral code ({CODE_LENGTH} characters from {ALPHABET})", field=field
        )
    return code


def link(code: str) -> str:
    """The link a member shares: the portal's sign-up with the code filled in."""
    return f"{get_settings().public_url}/portal/signup?ref={code}"


async def issue_code(conn: asyncpg.Connection, member_id: UUID) -> str:
    """The member's code, created on first use (members imported in bulk may have none)."""
    code = await conn.fetchval("SELECT code FROM referral_codes WHERE member = $1", member_id)
    while code is None:
        code = await conn.fetchval(
            """
            INSERT INTO referral_codes (member, code, created_at) VALUES ($1, $2, now())
            ON CONFLICT DO NOTHING RETURNING code
            """,
            member_id,
            new_code(),
        )
        if code is None:  # this member got one meanwhile, or (rarely) the code was taken
            code = await conn.fetchval(
                "SELECT code FROM referral_codes WHERE member = $1", member_id
            )
    return code


async def issue_codes(conn: asyncpg.Connection, member_ids: list[UUID]) -> None:
    """A code for each of these new members (any number at once: one enrolment, or an
    import's chunk); a code taken meanwhile (rarely) is drawn again."""
    missing = list(member_ids)
    while missing:
        coded = await conn.fetch(
            """
            INSERT INTO referral_codes (member, code, created_at)
            SELECT v.member, v.code, now() FROM unnest($1::uuid[], $2::text[]) AS v(member, code)
            ON CONFLICT DO NOTHING RETURNING member
            """,
            missing,
            [new_code() for _ in missing],
        )
        have = {row["member"] for row in coded}
        missing = [member_id for member_id in missing if member_id not in have]


@dataclass
class Referrer:
    member_id: UUID
    assigned_rep: UUID | None
    code: str


async def find_referrer(raw_code: str) -> Referrer:
    code = normalise_code(raw_code)
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """
            SELECT m.id, m.assigned_rep, m.merged_into FROM referral_codes c
            JOIN members m ON m.id = c.member WHERE c.code = $1
            """,
            code,
        )
        # A merged member's code still counts: the survivor is the referrer.
        while row is not None and row["merged_into"] is not None:
            row = await conn.fetchrow(
                "SELECT id, assigned_rep, merged_into FROM members WHERE id = $1",
                row["merged_into"],
            )
    if row is None:
        raise InvalidInput("no member has this referral code", field="referral_code")
    return Referrer(row["id"], row["assigned_rep"], code)
