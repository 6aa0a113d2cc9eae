"""Importing historic purchases: one CSV row per purchase line (consecutive rows with the
same `external_id` are one purchase), posted 1,000 purchases at a time through
`post_purchases`, which earns exactly once per external_id (a re-run replays)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import msgspec

from loyalty.auth import Principal
from loyalty.errors import DomainError
from loyalty.imports import rows as readers
from loyalty.imports.records import Progress, report
from loyalty.imports.rows import Problem
from loyalty.infrastructure import db
from loyalty.infrastructure.money import MAX_MONEY
from loyalty.points import schemas as points
from loyalty.settings import get_settings
from loyalty.workflows.sales import post_purchases

COLUMNS = (
    "external_id",
    "member_number",
    "member_phone",
    "occurred_at",
    "store",
    "sku",
    "category",
    "quantity",
    "unit_price",
)


class _Purchase:
    def __init__(self, row_no: int, external_id: str, head: dict[str, str]) -> None:
        self.row_no = row_no
        self.external_id = external_id
        self.head = head
        self.lines: list[dict[str, Any]] = []
        self.problems: list[Problem] = []


def _cells(mapping: dict[str, int], record: list[str]) -> dict[str, str]:
    return {c: record[i].strip() if i < len(record) else "" for c, i in mapping.items()}


def _build(item: _Purchase, currency: str) -> points.PurchaseCreate | None:
    if item.problems:
        return None
    head = item.head
    try:
        occurred_at = readers._datetime(head.get("occurred_at", ""))
    except ValueError:
        item.problems.append(
            Problem(item.row_no, "occurred_at", head.get("occurred_at", ""), "is not a date")
        )
        return None
    total = sum((Decimal(line["unit_price"]) * line["quantity"] for line in item.lines), Decimal(0))
    body = {
        "external_id": item.external_id,
        "occurred_at": occurred_at.isoformat(),
        "store": head.get("store") or "import",
        "currency": currency,
        "lines": item.lines,
        "total": str(total),
    }
    if head.get("member_number"):
        body["member_number"] = head["member_number"]
    elif head.get("member_phone"):
        body["member_phone"] = head["member_phone"]
    try:
        return msgspec.convert(body, points.PurchaseCreate, strict=False)
    except msgspec.ValidationError as exc:
        item.problems.append(Problem(item.row_no, "", "", str(exc)))
        return None


async def run_purchase_import(imp: Any, *, chunk_rows: int, progress: Progress | None) -> None:
    principal = Principal(kind="import", id=imp["id"], label=f"import:{imp['id']}")
    currency = get_settings().currency
    counter = readers.ByteCounter()
    with Path(imp["file_path"]).open("rb") as stream:  # noqa: ASYNC230  read line by line
        records = readers.records(stream, counter)
        first = next(records, None)
        if first is None:
            return
        mapping = {
            h.strip().lower().lstrip("\ufeff"): i
            for i, h in enumerate(first[1])
            if h.strip().lower().lstrip("\ufeff") in COLUMNS
        }
        batch: list[_Purchase] = []
        current: _Purchase | None = None
        read = 0
        for line, record in records:
            read += 1
            cells = _cells(mapping, record)
            external_id = cells.get("external_id", "")
            if current is None or external_id != current.external_id or not external_id:
                if current is not None:
                    batch.append(current)
                    if len(batch) >= chunk_rows:
                        await _post(imp["id"], batch, principal, currency, read, counter.done)
                        await report(progress, imp["id"])
                        batch = []
                current = _Purchase(line, external_id, cells)
                if not external_id:
                    current.problems.append(Problem(line, "external_id", "", "is required"))
            if any("\x00" in value for value in cells.values()):
                # PostgreSQL text cannot hold it: this purchase is refused, the file goes on.
                current.problems.append(Problem(line, "row", "", "contains a NUL character"))
                continue
            try:
                quantity = int(cells.get("quantity") or "1")
                price = Decimal(cells.get("unit_price", ""))
                if not price.is_finite() or abs(price) > MAX_MONEY or abs(quantity) > 1_000_000:
                    raise ValueError(price)  # sNaN, 9E+999999: would fail the sum, not the row
                current.lines.append(
                    {
                        "sku": cells.get("sku") or "import",
                        "category": cells.get("category") or "general",
                        "quantity": quantity,
                        "unit_price": str(price),
                    }
                )
            except (ValueError, InvalidOperation):
                current.problems.append(Problem(line, "quantity/unit_price", "", "is not a number"))
        if current is not None:
            batch.append(current)
        await _post(imp["id"], batch, principal, currency, read, counter.done)
        await report(progress, imp["id"])


async def _post(
    import_id: Any,
    batch: list[_Purchase],
    principal: Principal,
    currency: str,
    rows_read: int,
    bytes_done: int,
) -> None:
    built = [(item, _build(item, currency)) for item in batch]
    ready = [(item, data) for item, data in built if data is not None]
    outcomes = await post_purchases([data for _, data in ready], principal) if ready else []
    problems = [p for item in batch for p in item.problems]
    created = replayed = 0
    for (item, _), outcome in zip(ready, outcomes, strict=True):
        if isinstance(outcome, DomainError):
            problems.append(Problem(item.row_no, outcome.field or "", "", outcome.detail))
        elif outcome.status == "created":
            created += 1
        else:
            replayed += 1
    async with db.transaction() as conn:
        errors = await conn.fetch(
            """
            INSERT INTO import_errors (id, import_id, row_no, "column", value, reason)
            SELECT gen_random_uuid(), $1, r, c, v, why
            FROM unnest($2::int[], $3::text[], $4::text[], $5::text[]) AS p(r, c, v, why)
            ON CONFLICT DO NOTHING RETURNING 1
            """,
            import_id,
            [p.row_no for p in problems],
            [p.column[:64] for p in problems],
            [p.value for p in problems],
            [p.reason for p in problems],
        )
        await conn.execute(
            """
            UPDATE imports SET created = created + $2, skipped = skipped + $3,
                errors = errors + $4, rows_read = greatest(rows_read, $5),
                bytes_done = greatest(bytes_done, $6)
            WHERE id = $1
            """,
            import_id,
            created,
            replayed,
            len(errors),
            rows_read,
            bytes_done,
        )
