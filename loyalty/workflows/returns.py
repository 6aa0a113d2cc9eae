"""A return: the returned lines' points are reversed (pending first; what was spent becomes
debt), and a purchase returned in full takes back the referral reward it paid."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.points import ledger, returns, schemas
from loyalty.points.purchases import body_hash
from loyalty.referrals import rewards as referrals
from loyalty.webhooks import service as webhooks


async def post_return(
    external_id: str, data: schemas.ReturnCreate, principal: Principal
) -> schemas.Return:
    """Reverse the points of returned lines (pending first); what was spent becomes debt."""
    request_hash = body_hash(data)
    async with db.transaction() as conn:
        purchase, account, referral_accounts = await _lock(conn, external_id)
        replay = await returns.replayed(
            conn, data, external_id, purchase["id"], request_hash, account.debt
        )
        if replay is not None:
            return replay
        lines = await returns.return_lines(conn, purchase["id"], data)
        own_entry = await returns.earn_entry(conn, external_id)
        points_taken = await returns.points_to_take_back(
            conn,
            account.member_id,
            purchase["id"],
            own_entry,
            purchase["reversed_points"] + lines.points,
        )
        await returns.record_return(
            conn, data, purchase["id"], account.member_id, lines, points_taken, request_hash
        )
        if points_taken > 0:
            await _take_back(conn, account, points_taken, own_entry, data, external_id, principal)
        if purchase["returned_amount"] + lines.amount >= purchase["total"]:
            referral_accounts[account.member_id] = account
            await referrals.after_full_return(
                conn, purchase["id"], referral_accounts, principal.label
            )
    return schemas.Return(
        return_id=data.return_id,
        external_id=external_id,
        member_id=account.member_id,
        amount=lines.amount,
        points_reversed=points_taken,
        debt_after=account.debt,
        status="created",
    )


async def _lock(
    conn: asyncpg.Connection, external_id: str
) -> tuple[asyncpg.Record, ledger.Account, dict[UUID, ledger.Account]]:
    """The purchase (locked), the account that holds its points and the accounts of a
    referral it paid for, all locked.

    Lock order: the accounts first, then the purchase (see ledger). A return of a purchase
    that paid a referral may take that reward back from both members, so both accounts are
    locked up front. A merge may move the purchase while we wait, so follow it to the
    account that holds it now."""
    purchase = await returns.purchase_of(conn, external_id)
    referral_members = await referrals.rewarded_referral_members(conn, purchase["id"])
    referral_accounts = await ledger.lock_accounts(conn, sorted(referral_members))
    account = await ledger.lock_current_account(conn, purchase["member"])
    purchase = await returns.lock_purchase(conn, purchase["id"])
    while purchase["member"] != account.member_id:
        account = await ledger.lock_current_account(conn, purchase["member"])
        purchase = await returns.read_purchase(conn, purchase["id"])
    return purchase, account, referral_accounts


async def _take_back(
    conn: asyncpg.Connection,
    account: ledger.Account,
    points: int,
    own_entry: UUID | None,
    data: schemas.ReturnCreate,
    external_id: str,
    principal: Principal,
) -> None:
    """The reversal entry, taken from the purchase's own lot first, then pending points."""
    reversal = ledger.NewEntry(
        account.member_id,
        -points,
        kind="reversal",
        cause_type="return",
        cause_id=data.return_id,
        key=f"return:{data.return_id}",
        occurred_at=now(),
        actor=principal.label,
        note=data.reason or None,
    )
    await ledger.insert_entries(conn, [reversal])
    await ledger.consume(
        conn, account, points, order=ledger.OWN_LOT_THEN_PENDING, own_entry=own_entry
    )
    await ledger.save_account(conn, account)
    if await webhooks.subscribed("points.reversed"):
        await events.record(
            conn,
            "points.reversed",
            {"points": points, "return_id": data.return_id, "external_id": external_id},
            account.member_id,
        )
