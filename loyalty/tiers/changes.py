"""Tier changes: every change is written to `member_tiers` and `tier_changes` and announced
through the outbox ("tier.changed"); the upgrade a purchase earns is one statement, defined
here once and used both by tiers and by the posting of a sale."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import asyncpg

from loyalty.events import service as events
from loyalty.infrastructure.clock import now
from loyalty.tiers import schemas
from loyalty.tiers.ladder import Ladder, ladder, qualifying_values, window_start


async def change(
    conn: asyncpg.Connection,
    member_id: UUID,
    from_tier: str | None,
    to_tier: str,
    *,
    reason: str,
    at: datetime,
    value: Decimal | None = None,
    actor: str = "system",
    note: str = "",
    clear_override: bool = True,
) -> None:
    assignments = (
        "tier = $2::varchar, since = CASE WHEN tier = $2::varchar THEN since ELSE $3 END,"
        " below_since = NULL"
    )
    if clear_override:
        assignments += (
            ", override_tier = NULL, override_until = NULL, override_reason = NULL,"
            " override_by = NULL"
        )
    await conn.execute(
        f"UPDATE member_tiers SET {assignments} WHERE member = $1", member_id, to_tier, at
    )
    await conn.execute(
        """
        INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor,
            qualifying_value, at)
        VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8)
        """,
        member_id,
        from_tier,
        to_tier,
        reason,
        note,
        actor,
        value,
        at,
    )
    if from_tier != to_tier:
        await events.record(
            conn,
            "tier.changed",
            {"from_tier": from_tier, "to_tier": to_tier, "reason": reason},
            member_id,
        )


async def enrol(conn: asyncpg.Connection, member_ids: list[UUID]) -> None:
    """Every new member starts on the lowest switched-on tier (any number at once: one
    enrolment, or an import's chunk)."""
    lowest = (await ladder()).enabled[0].code
    await conn.execute(
        """
        WITH entered AS (
            INSERT INTO member_tiers (id, member, tier, since)
            SELECT gen_random_uuid(), m, $2, $3 FROM unnest($1::uuid[]) AS m
        )
        INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor, at)
        SELECT gen_random_uuid(), m, NULL, $2, 'initial', '', 'system', $3
        FROM unnest($1::uuid[]) AS m
        """,
        member_ids,
        lowest,
        now(),
    )


@dataclass
class TierState:
    tier: str
    below_since: datetime | None
    override_until: datetime | None


async def states(conn: asyncpg.Connection, member_ids: list[UUID]) -> dict[UUID, TierState]:
    rows = await conn.fetch(
        "SELECT member, tier, below_since, override_until FROM member_tiers"
        " WHERE member = ANY($1::uuid[])",
        member_ids,
    )
    return {r["member"]: TierState(r["tier"], r["below_since"], r["override_until"]) for r in rows}


@dataclass
class Upgrade:
    member: UUID
    from_tier: str
    to_tier: str
    value: Decimal


def upgrade_ctes(first: int) -> str:
    """The one statement of an upgrade, as CTEs to put after WITH: the tier rows move up,
    the change is written to `tier_changes` and announced through the outbox, and members
    back above their threshold leave their grace period. A row changed meanwhile (the
    evaluation job) is left alone; earning more than an override gave ends the override (an
    override is never a ceiling either). Its six parameters, numbered from `first`, are
    `upgrade_args`."""
    member, from_tier, to_tier, value, at, back_above = (f"${first + n}" for n in range(6))
    return f"""
        upgraded AS (
            UPDATE member_tiers t SET tier = v.to_tier, since = {at}, below_since = NULL,
                override_tier = NULL, override_until = NULL, override_reason = NULL,
                override_by = NULL
            FROM unnest({member}::uuid[], {from_tier}::text[], {to_tier}::text[],
                        {value}::numeric[])
                 AS v(member, from_tier, to_tier, value)
            WHERE t.member = v.member AND t.tier = v.from_tier
            RETURNING v.member, v.from_tier, v.to_tier, v.value
        ), history AS (
            INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor,
                qualifying_value, at)
            SELECT gen_random_uuid(), member, from_tier, to_tier, 'upgrade', '', 'system',
                   value, {at}
            FROM upgraded
        ), announced AS (
            INSERT INTO outbox_events (id, topic, member, payload, created_at, attempts)
            SELECT gen_random_uuid(), 'tier.changed', member,
                   jsonb_build_object('from_tier', from_tier, 'to_tier', to_tier,
                                      'reason', 'upgrade'),
                   now(), 0
            FROM upgraded
        ), back_above AS (
            UPDATE member_tiers SET below_since = NULL WHERE member = ANY({back_above}::uuid[])
        )
    """


def upgrade_args(upgrades: list[Upgrade], at: datetime, back_above: list[UUID]) -> list:
    """The parameters of `upgrade_ctes`, in its order."""
    return [
        [u.member for u in upgrades],
        [u.from_tier for u in upgrades],
        [u.to_tier for u in upgrades],
        [u.value for u in upgrades],
        at,
        back_above,
    ]


async def apply_upgrades(conn: asyncpg.Connection, upgrades: list[Upgrade], at: datetime) -> None:
    """Upgrades in the caller's transaction, in one statement."""
    if upgrades:
        await conn.execute(
            f"WITH {upgrade_ctes(1)} SELECT 1", *upgrade_args(upgrades, at, back_above=[])
        )


def _rank(current: Ladder, code: str) -> int:
    tier = current.by_code(code)
    return tier.rank if tier else -1


@dataclass
class Climb:
    """What a posting's purchases do to their members' tiers, counted in posting order: an
    upgrade applies from the member's next purchase (its earn multiplier included)."""

    ladder: Ladder
    states: dict[UUID, TierState]
    values: dict[UUID, Decimal]  # the qualifying values of the members who may climb
    window: tuple[datetime, datetime]  # purchases dated in it count
    upgrades: dict[UUID, Upgrade] = field(default_factory=dict)
    back_above: set[UUID] = field(default_factory=set)

    def tier(self, member: UUID) -> schemas.Tier | None:
        return self.ladder.by_code(self.states[member].tier)

    def multiplier(self, member: UUID) -> Decimal:
        tier = self.tier(member)
        return tier.earn_multiplier if tier else Decimal(1)

    def count(self, member: UUID, occurred_at: datetime, points: int, total: Decimal) -> None:
        """One purchase of the member, after its points are known."""
        if member not in self.values or not self.window[0] <= occurred_at <= self.window[1]:
            return
        tier = self.tier(member)
        state = self.states[member]
        self.values[member] += points if self.ladder.settings.basis == "points_earned" else total
        target = self.ladder.qualified(self.values[member])
        if tier is None or target.rank > tier.rank:
            origin = self.upgrades[member].from_tier if member in self.upgrades else state.tier
            self.upgrades[member] = Upgrade(member, origin, target.code, self.values[member])
            state.tier = target.code
        elif (
            state.below_since is not None
            and target.rank >= tier.rank
            and state.override_until is None
        ):
            self.back_above.add(member)

    def args(self, at: datetime) -> list:
        """The parameters of `upgrade_ctes` for what was counted."""
        cleared = sorted(self.back_above - set(self.upgrades))
        return upgrade_args(list(self.upgrades.values()), at, cleared)


async def climb(
    conn: asyncpg.Connection,
    current: Ladder,
    states: dict[UUID, TierState],
    at: datetime,
    until: datetime,
) -> Climb:
    """Start counting purchases of these members (their tier rows locked, so the values are
    read after any upgrade that committed first). Members already in the top tier cannot
    climb: their value is read only while they are in grace (spending back above the
    threshold ends it). Purchases dated up to `until` count."""
    climbing = [
        member
        for member, state in states.items()
        if current.next_above(_rank(current, state.tier)) or state.below_since is not None
    ]
    values = (
        await qualifying_values(conn, climbing, at, current.settings, until=until)
        if climbing
        else {}
    )
    return Climb(current, states, values, (window_start(at, current.settings.window_months), until))


async def after_purchase(conn: asyncpg.Connection, member_id: UUID, at: datetime) -> None:
    """Re-qualify one member after purchases moved to them (a merge): upgrade at once."""
    current = await ladder()
    state = (await states(conn, [member_id]))[member_id]
    value = (await qualifying_values(conn, [member_id], at, current.settings))[member_id]
    target = current.qualified(value)
    tier = current.by_code(state.tier)
    if target.rank > (tier.rank if tier else -1):
        await apply_upgrades(conn, [Upgrade(member_id, state.tier, target.code, value)], at)


async def after_merge(
    conn: asyncpg.Connection, duplicate_id: UUID, survivor_id: UUID, actor: str
) -> None:
    """The survivor keeps the higher of the two tiers, then qualifies on the merged purchases."""
    current = await ladder()
    rows = {
        row["member"]: row["tier"]
        for row in await conn.fetch(
            "SELECT member, tier FROM member_tiers WHERE member = ANY($1::uuid[]) ORDER BY member"
            " FOR UPDATE",
            [duplicate_id, survivor_id],
        )
    }
    ranks = {m: (current.by_code(t).rank if current.by_code(t) else -1) for m, t in rows.items()}
    at = now()
    if ranks.get(duplicate_id, -1) > ranks.get(survivor_id, -1):
        await change(
            conn,
            survivor_id,
            rows[survivor_id],
            rows[duplicate_id],
            reason="merge",
            at=at,
            actor=actor,
            note=f"kept the tier of merged member {duplicate_id}",
        )
    await after_purchase(conn, survivor_id, at)
