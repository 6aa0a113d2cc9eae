"""Returns as the points domain keeps them: which lines come back, what their points are
worth, and the rows of `purchases`, `purchase_lines` and `purchase_returns` a return writes.
The return itself, which spans domains, is loyalty.workflows.returns."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from uuid import UUID, uuid4

import asyncpg
import msgspec

from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.points import schemas


def _return_id_taken() -> Conflict:
    return Conflict("a different return was already posted with this return_id", field="return_id")


async def purchase_of(conn: asyncpg.Connection, external_id: str) -> asyncpg.Record:
    """The purchase's id and member, unlocked."""
    purchase = await conn.fetchrow(
        "SELECT id, member FROM purchases WHERE external_id = $1", external_id
    )
    if purchase is None:
        raise NotFound("no purchase with that external_id")
    return purchase


async def lock_purchase(conn: asyncpg.Connection, purchase_id: UUID) -> asyncpg.Record:
    return await conn.fetchrow("SELECT * FROM purchases WHERE id = $1 FOR UPDATE", purchase_id)


async def read_purchase(conn: asyncpg.Connection, purchase_id: UUID) -> asyncpg.Record:
    return await conn.fetchrow("SELECT * FROM purchases WHERE id = $1", purchase_id)


async def replayed(
    conn: asyncpg.Connection,
    data: schemas.ReturnCreate,
    external_id: str,
    purchase_id: UUID,
    request_hash: str,
    debt: int,
) -> schemas.Return | None:
    """The answer to a return sent again (None if this return_id is new); the same
    return_id for another return is a conflict."""
    previous = await conn.fetchrow(
        "SELECT * FROM purchase_returns WHERE return_id = $1", data.return_id
    )
    if previous is None:
        return None
    if previous["request_hash"] != request_hash or previous["purchase"] != purchase_id:
        raise _return_id_taken()
    return schemas.Return(
        return_id=data.return_id,
        external_id=external_id,
        member_id=previous["member"],
        amount=previous["amount"],
        points_reversed=previous["points"],
        debt_after=debt,
        status="replayed",
    )


@dataclass
class LinesReturned:
    """What a return does to its purchase's lines."""

    quantities: dict[int, int]  # returned quantity by line_no
    amount: Decimal
    points: int  # the lines' points reversed by this return


async def return_lines(
    conn: asyncpg.Connection, purchase_id: UUID, data: schemas.ReturnCreate
) -> LinesReturned:
    """Mark the returned lines and the purchase (its lines locked); partial returns add up to
    exactly a line's points, as they are counted cumulatively."""
    lines = await conn.fetch(
        "SELECT * FROM purchase_lines WHERE purchase = $1 ORDER BY line_no FOR UPDATE",
        purchase_id,
    )
    returned = returned_quantities(lines, data)
    amount, reversed_total = Decimal(0), 0
    updates = []
    for line in lines:
        quantity = returned.get(line["line_no"], 0)
        if not quantity:
            continue
        new_returned = line["returned_quantity"] + quantity
        reversed_so_far = line["points"] * new_returned // line["quantity"]
        amount += quantity * line["unit_price"]
        reversed_total += reversed_so_far - line["reversed_points"]
        updates.append((line["id"], new_returned, reversed_so_far))
    await conn.execute(
        """
        UPDATE purchase_lines SET returned_quantity = v.q, reversed_points = v.p
        FROM unnest($1::uuid[], $2::int[], $3::bigint[]) AS v(id, q, p)
        WHERE purchase_lines.id = v.id
        """,
        [u[0] for u in updates],
        [u[1] for u in updates],
        [u[2] for u in updates],
    )
    await conn.execute(
        """
        UPDATE purchases SET returned_amount = returned_amount + $2,
                             reversed_points = reversed_points + $3
        WHERE id = $1
        """,
        purchase_id,
        amount,
        reversed_total,
    )
    return LinesReturned(returned, amount, reversed_total)


async def earn_entry(conn: asyncpg.Connection, external_id: str) -> UUID | None:
    """The ledger entry the purchase earned its points with (none if it earned nothing)."""
    return await conn.fetchval(
        "SELECT id FROM points_ledger WHERE idempotency_key = $1", f"purchase:{external_id}"
    )


async def points_to_take_back(
    conn: asyncpg.Connection,
    holder: UUID,
    purchase_id: UUID,
    own_entry: UUID | None,
    lines_reversed: int,
) -> int:
    """What a return takes from the account: the returned lines' points (`lines_reversed`,
    all returns of the purchase so far) less those of its points that expired, which left
    the account already, less what earlier returns took. Spent points are taken (they become
    debt); expired ones are not taken twice, so a purchase returned in full nets to zero."""
    row = await conn.fetchrow(
        """
        SELECT
            (SELECT coalesce(-sum(e.points), 0)::bigint FROM points_lots l
             JOIN points_ledger e ON e.idempotency_key = 'expiry:' || l.id::text
             WHERE l.member = $1 AND l.entry = $2) AS expired,
            (SELECT coalesce(sum(points), 0)::bigint FROM purchase_returns WHERE purchase = $3)
                AS taken
        """,
        holder,  # the lot's holder (a merge moves lots): its index finds the lot
        own_entry,
        purchase_id,
    )
    return max(0, lines_reversed - row["expired"] - row["taken"])


async def record_return(
    conn: asyncpg.Connection,
    data: schemas.ReturnCreate,
    purchase_id: UUID,
    member: UUID,
    lines: LinesReturned,
    points: int,
    request_hash: str,
) -> None:
    try:
        await conn.execute(
            """
            INSERT INTO purchase_returns (id, return_id, purchase, member, lines, amount,
                points, request_hash, created_at)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, now())
            """,
            uuid4(),
            data.return_id,
            purchase_id,
            member,
            msgspec.json.encode(lines.quantities).decode(),
            lines.amount,
            points,
            request_hash,
        )
    except asyncpg.UniqueViolationError as exc:
        # The return_id was checked under this purchase's account lock only: a return of
        # another member's purchase took it meanwhile.
        raise _return_id_taken() from exc


def returned_quantities(lines: list, data: schemas.ReturnCreate) -> dict[int, int]:
    """Map each returned line (by line_no or a SKU unique in the purchase) to its quantity."""
    by_no = {line["line_no"]: line for line in lines}
    by_sku: dict[str, list] = {}
    for line in lines:
        by_sku.setdefault(line["sku"], []).append(line)
    wanted: dict[int, int] = {}
    for i, item in enumerate(data.lines):
        field = f"lines[{i}]"
        if item.line_no is not None:
            line = by_no.get(item.line_no)
            if line is None:
                raise InvalidInput("the purchase has no such line", field=f"{field}.line_no")
        elif item.sku is not None:
            matches = by_sku.get(item.sku, [])
            if not matches:
                raise InvalidInput("the purchase has no line with this SKU", field=f"{field}.sku")
            if len(matches) > 1:
                raise InvalidInput(
                    "this SKU is on several lines; name the line_no", field=f"{field}.sku"
                )
            line = matches[0]
        else:
            raise InvalidInput("name the line by line_no or sku", field=f"{field}.line_no")
        wanted[line["line_no"]] = wanted.get(line["line_no"], 0) + item.quantity
        left = line["quantity"] - line["returned_quantity"]
        if wanted[line["line_no"]] > left:
            raise InvalidInput(
                f"returns more than was bought: {left} of line {line['line_no']} can still be"
                " returned",
                field=f"{field}.quantity",
            )
    return wanted
