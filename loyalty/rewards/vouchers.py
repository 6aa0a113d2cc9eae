"""Voucher and seat codes: the pools staff import for voucher rewards, and the codes a
redemption hands over (taken from the pool, or made up for rewards without one)."""

from __future__ import annotations

import csv
import re
import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.errors import InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.infrastructure.schemas import VISIBLE
from loyalty.rewards import schemas
from loyalty.rewards.eligibility import EXPLANATIONS, refusal

CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_PREFIX = {"voucher": "V", "event_seat": "S"}


async def import_vouchers(
    reward_id: UUID, data: schemas.VoucherImportCreate, principal: Principal
) -> schemas.VoucherImportResult:
    """Add codes to a voucher reward's pool; codes already there are skipped."""
    async with db.transaction() as conn:
        reward = await conn.fetchrow("SELECT * FROM rewards WHERE id = $1", reward_id)
        if reward is None:
            raise NotFound("no such reward")
        if reward["voucher_source"] != "pool":
            raise InvalidInput("this reward does not take codes from a pool", field="codes")
        codes = list(dict.fromkeys(data.codes))
        inserted = await conn.fetch(
            """
            INSERT INTO reward_vouchers (id, reward, code, imported_at)
            SELECT gen_random_uuid(), $1, code, now() FROM unnest($2::text[]) AS code
            ON CONFLICT (reward, code) DO NOTHING RETURNING id
            """,
            reward_id,
            codes,
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM reward_vouchers WHERE reward = $1 AND redemption IS NULL",
            reward_id,
        )
        await conn.execute(
            "UPDATE rewards SET updated_at = now(), updated_by = $2 WHERE id = $1",
            reward_id,
            principal.label,
        )
        # The codes themselves are secrets: only how many came in.
        await audit.record(
            "rewards.vouchers_import",
            "reward",
            reward_id,
            after={"imported": len(inserted), "sent": len(data.codes), "vouchers_left": left},
        )
    return schemas.VoucherImportResult(
        imported=len(inserted), already_there=len(data.codes) - len(inserted), vouchers_left=left
    )


def _new_code(kind: str) -> str:
    body = "".join(secrets.choice(CODE_ALPHABET) for _ in range(10))
    return f"{CODE_PREFIX[kind]}-{body[:5]}-{body[5:]}"


async def issue_codes(
    conn: asyncpg.Connection, reward: Any, redemption_id: UUID, quantity: int
) -> list[str]:
    """The codes this redemption hands over, in the caller's transaction: vouchers from the
    pool (SKIP LOCKED, so concurrent redemptions take different ones), else new codes for
    the kinds that carry one."""
    if reward["voucher_source"] == "pool":
        codes = [
            row["code"]
            for row in await conn.fetch(
                """
                UPDATE reward_vouchers SET redemption = $2
                WHERE id IN (
                    SELECT id FROM reward_vouchers WHERE reward = $1 AND redemption IS NULL
                    ORDER BY imported_at, id LIMIT $3 FOR UPDATE SKIP LOCKED
                )
                RETURNING code
                """,
                reward["id"],
                redemption_id,
                quantity,
            )
        ]
        if len(codes) < quantity:
            raise refusal("out_of_stock", EXPLANATIONS["out_of_stock"])
        return sorted(codes)
    if reward["kind"] in CODE_PREFIX:
        return [_new_code(reward["kind"]) for _ in range(quantity)]
    return []


MAX_CODES = 10_000  # one import call's limit (VoucherImportCreate)
_CODE = re.compile(rf"^{VISIBLE}{{1,64}}$")


@dataclass(frozen=True)
class LineProblem:
    """What is wrong with one line of a voucher file (lines count from 1)."""

    line: int
    problem: str  # blank, duplicate, invalid, columns
    first_line: int | None = None  # a duplicate: the line that has the code first
    code: str = ""


def read_codes(text: str) -> tuple[list[str], list[LineProblem]]:
    """The codes of a voucher file (CSV, one code per line; a first line `code` is a header)
    and every line's problem: blank lines, a code given twice, more than one column, a code
    that is not 1 to 64 characters without spaces."""
    codes: list[str] = []
    problems: list[LineProblem] = []
    seen: dict[str, int] = {}
    lines = text.removeprefix("\ufeff").splitlines()
    for number, line in enumerate(lines, 1):
        cells = [cell.strip() for cell in next(csv.reader([line]), [])] if line.strip() else []
        cells = cells[:1] if len(cells) > 1 and not any(cells[1:]) else cells
        if number == 1 and [c.lower() for c in cells] == ["code"]:
            continue
        if not cells or not cells[0]:
            problems.append(LineProblem(number, "blank"))
        elif len(cells) > 1:
            problems.append(LineProblem(number, "columns", code=line.strip()[:80]))
        elif not _CODE.match(cells[0]):
            problems.append(LineProblem(number, "invalid", code=cells[0][:80]))
        elif cells[0] in seen:
            problems.append(LineProblem(number, "duplicate", seen[cells[0]], cells[0]))
        else:
            seen[cells[0]] = number
            codes.append(cells[0])
    return codes, problems
