"""Stateful property test: random purchases, returns, adjustments, pending releases and
expiries against a simple in-memory model of lots. After every step the real ledger must
agree with the model, and the balance must equal the sum of its entries."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from loyalty.auth import staff_principal
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import add_months
from loyalty.members import schemas as member_schemas
from loyalty.points import schemas, service
from loyalty.workflows import returns, sales
from loyalty.workflows.enrolment import enrol_member

ADMIN = None  # set by the test to a real admin's principal
PENDING_DAYS, EXPIRY_MONTHS = 14, 24


@dataclass
class Lot:
    points: int
    remaining: int
    available_at: datetime
    expires_at: datetime
    released: bool
    purchase: str | None = None
    expired: int = 0


@dataclass
class ModelPurchase:
    external_id: str
    quantity: int
    points: int
    returned: int = 0
    reversed: int = 0  # the returned lines' points
    taken: int = 0  # what returns took from the account: less what expired first


class LedgerMachine(RuleBasedStateMachine):
    """The model mirrors the documented rules, not the implementation's SQL."""

    loop: asyncio.AbstractEventLoop

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    @initialize()
    def enrol(self) -> None:
        member = self.run(enrol_member(member_schemas.MemberCreate(name="Prop"), ADMIN))
        self.member_id = member.id
        self.lots: list[Lot] = []
        self.debt = 0
        self.purchases: list[ModelPurchase] = []

    # --- model helpers -------------------------------------------------------------------

    def earn(
        self, points: int, occurred_at: datetime, pending_days: int, now: datetime, purchase=None
    ):
        available_at = occurred_at + timedelta(days=pending_days)
        repaid = min(self.debt, points)
        self.debt -= repaid
        self.lots.append(
            Lot(
                points,
                points - repaid,
                available_at,
                add_months(occurred_at, EXPIRY_MONTHS),
                available_at <= now,
                purchase,
            )
        )

    def consume(self, amount: int, order) -> None:
        for lot in sorted((lot for lot in self.lots if lot.remaining), key=order):
            take = min(amount, lot.remaining)
            lot.remaining -= take
            amount -= take
            if not amount:
                return
        self.debt += amount

    # --- rules ---------------------------------------------------------------------------

    @rule(
        cents=st.integers(min_value=1, max_value=50_000),
        quantity=st.integers(min_value=1, max_value=4),
        days_ago=st.integers(min_value=0, max_value=800),
    )
    def purchase(self, cents: int, quantity: int, days_ago: int) -> None:
        unit_price = Decimal(cents) / 100
        occurred_at = datetime.now(UTC) - timedelta(days=days_ago, minutes=1)
        external_id = f"P-{uuid.uuid4()}"
        body = schemas.PurchaseCreate(
            external_id=external_id,
            occurred_at=occurred_at,
            store="S",
            currency="CNY",
            lines=[schemas.PurchaseLineCreate(sku="X", quantity=quantity, unit_price=unit_price)],
            total=unit_price * quantity,
            member_id=self.member_id,
        )
        result = self.run(sales.post_purchase(body, ADMIN))
        points = int((unit_price * quantity).to_integral_value(rounding=ROUND_FLOOR))
        assert result.points == points
        if points:
            self.earn(points, occurred_at, PENDING_DAYS, datetime.now(UTC), external_id)
        self.purchases.append(ModelPurchase(external_id, quantity, points))

    @precondition(lambda self: any(p.returned < p.quantity for p in self.purchases))
    @rule(data=st.data())
    def give_back(self, data) -> None:
        open_purchases = [p for p in self.purchases if p.returned < p.quantity]
        purchase = data.draw(st.sampled_from(open_purchases))
        quantity = data.draw(
            st.integers(min_value=1, max_value=purchase.quantity - purchase.returned)
        )
        body = schemas.ReturnCreate(
            return_id=f"R-{uuid.uuid4()}",
            lines=[schemas.ReturnLineCreate(quantity=quantity, line_no=1)],
        )
        result = self.run(returns.post_return(purchase.external_id, body, ADMIN))
        purchase.returned += quantity
        purchase.reversed = purchase.points * purchase.returned // purchase.quantity
        # Points of the purchase that expired left the account already: not taken twice.
        expired = sum(lot.expired for lot in self.lots if lot.purchase == purchase.external_id)
        reversal = max(0, purchase.reversed - expired - purchase.taken)
        purchase.taken += reversal
        assert result.points_reversed == reversal
        if reversal:

            def order(lot: Lot):
                if lot.purchase == purchase.external_id:
                    return (0, 0.0)
                if not lot.released:
                    return (1, -lot.available_at.timestamp())
                return (2, lot.expires_at.timestamp())

            self.consume(reversal, order)

    @rule(points=st.integers(min_value=-3000, max_value=3000).filter(bool))
    def adjust(self, points: int) -> None:
        body = schemas.AdjustmentCreate(points=points, reason="property test")
        now = datetime.now(UTC)
        self.run(service.adjust(self.member_id, body, ADMIN))
        if points > 0:
            self.earn(points, now, 0, now)
        else:
            self.consume(-points, lambda lot: (not lot.released, lot.expires_at.timestamp()))

    @rule(days_ahead=st.integers(min_value=0, max_value=20))
    def release(self, days_ahead: int) -> None:
        at = datetime.now(UTC) + timedelta(days=days_ahead)
        self.run(service.release_pending(at=at))
        for lot in self.lots:
            if not lot.released and lot.available_at <= at:
                lot.released = True

    @rule()
    def expire(self) -> None:
        at = datetime.now(UTC)
        self.run(service.expire_points(at=at))
        for lot in self.lots:
            if lot.expires_at <= at:
                lot.expired += lot.remaining
                lot.remaining = 0

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_the_model(self) -> None:
        if not hasattr(self, "member_id"):
            return
        balance, entries_sum = self.run(self.read())
        available = sum(lot.remaining for lot in self.lots if lot.released)
        pending = sum(lot.remaining for lot in self.lots if not lot.released)
        assert balance.total == entries_sum, "balance differs from the sum of its entries"
        assert balance.available >= 0 and balance.pending >= 0 and balance.debt >= 0
        assert (balance.available, balance.pending, balance.debt) == (available, pending, self.debt)
        now = datetime.now(UTC)
        for days, figure in (
            (30, balance.expiring.within_30_days),
            (60, balance.expiring.within_60_days),
            (90, balance.expiring.within_90_days),
        ):
            expected = sum(
                lot.remaining for lot in self.lots if lot.expires_at <= now + timedelta(days=days)
            )
            assert figure == expected, f"expiring within {days} days"

    async def read(self):
        balance = await service.balance(self.member_id, ADMIN)
        async with db.connection() as conn:
            total = await conn.fetchval(
                "SELECT coalesce(sum(points), 0) FROM points_ledger WHERE member = $1",
                self.member_id,
            )
        return balance, total


async def test_ledger_matches_a_simple_model(app, make_staff):
    global ADMIN
    staff = await make_staff("propadmin", "admin")
    ADMIN = staff_principal(staff.id, staff.username, "admin", None)
    await service.get_rules(fresh=True)  # defaults: 14 pending days, 24 months
    LedgerMachine.loop = asyncio.get_running_loop()
    config = settings(
        max_examples=40,
        stateful_step_count=25,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    await asyncio.to_thread(run_state_machine_as_test, LedgerMachine, settings=config)
