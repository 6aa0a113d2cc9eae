"""Tier rules: qualification on a rolling window, upgrade at once on the qualifying purchase,
downgrade only at evaluation after a grace period and one step at a time, manual overrides
that always end, and the what-if simulation (the evaluation's own SQL, not applied).

`member_tiers.tier` is always the tier a member has now (an override included), and every
change is written to `tier_changes` and announced through the outbox ("tier.changed").
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from loyalty.auth import Principal
from loyalty.errors import Conflict, InvalidInput, PermissionDenied
from loyalty.events import service as events
from loyalty.infrastructure import db
from loyalty.infrastructure.caches import Cache
from loyalty.infrastructure.clock import add_months, now
from loyalty.members import service as members
from loyalty.settings import get_settings
from loyalty.tiers import schemas

CACHE_SECONDS = 5.0
EVALUATION_HOUR = 1  # the daily evaluation runs at 01:00 in LOYALTY_TIMEZONE
OVERRIDING_ROLES = {"admin", "general_manager", "manager"}
LOWEST_UUID = UUID(int=0)
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Ladder:
    tiers: list[schemas.Tier]  # every tier, by rank
    settings: schemas.TierSettings

    @property
    def enabled(self) -> list[schemas.Tier]:
        return [t for t in self.tiers if t.enabled]

    def by_code(self, code: str) -> schemas.Tier | None:
        return next((t for t in self.tiers if t.code == code), None)

    def qualified(self, value: Decimal) -> schemas.Tier:
        """The highest switched-on tier whose threshold the value reaches."""
        reached = [t for t in self.enabled if t.threshold <= value]
        return reached[-1] if reached else self.enabled[0]

    def step_below(self, rank: int) -> schemas.Tier | None:
        below = [t for t in self.enabled if t.rank < rank]
        return below[-1] if below else None

    def next_above(self, rank: int) -> schemas.Tier | None:
        return next((t for t in self.enabled if t.rank > rank), None)


_cache: Cache[Ladder] = Cache("tier ladder")


def _tier_from_row(row: Any) -> schemas.Tier:
    return schemas.Tier(
        code=row["code"],
        name=row["name"],
        rank=row["rank"],
        threshold=Decimal(row["threshold"]),
        earn_multiplier=Decimal(row["earn_multiplier"]),
        enabled=row["enabled"],
        service_level=schemas.ServiceLevel(
            contact_cadence_days=row["contact_cadence_days"],
            response_time_hours=row["response_time_hours"],
            named_service_team=row["named_service_team"],
            executive_sponsor_role=row["executive_sponsor_role"],
            birthday_gift=row["birthday_gift"],
            event_invitations=row["event_invitations"],
            benefits=row["benefits"],
        ),
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def ladder(*, fresh: bool = False) -> Ladder:
    """The ladder and settings, cached for a few seconds per process."""
    if not fresh and (cached := _cache.get(CACHE_SECONDS)) is not None:
        return cached
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM tier_definitions ORDER BY rank")
        settings = await conn.fetchrow("SELECT * FROM tier_settings WHERE id = 1")
    result = Ladder(
        tiers=[_tier_from_row(row) for row in rows],
        settings=schemas.TierSettings(
            basis=settings["basis"],
            window_months=settings["window_months"],
            grace_days=settings["grace_days"],
            updated_at=settings["updated_at"],
            updated_by=settings["updated_by"],
        ),
    )
    _cache.put(result)
    return result


def _forget_cache() -> None:
    _cache.clear()


# --- windows and qualifying values ---------------------------------------------------------


def _months_back(day: date, months: int) -> date:
    return add_months(datetime.combine(day, clock()), -months).date()


def window_start(at: datetime, months: int) -> datetime:
    """Local midnight, `months` before the local date of `at` (LOYALTY_TIMEZONE): a purchase
    exactly that old still counts."""
    tz = get_settings().tz
    local_day = at.astimezone(tz).date()
    return datetime.combine(_months_back(local_day, months), clock(), tzinfo=tz)


def next_evaluation(at: datetime) -> datetime:
    tz = get_settings().tz
    local = at.astimezone(tz)
    today_run = datetime.combine(local.date(), clock(EVALUATION_HOUR), tzinfo=tz)
    return today_run if local < today_run else today_run + timedelta(days=1)


def _value_query(basis: str, member_expr: str, start: str, end: str) -> str:
    """A scalar query for one member's qualifying value under the qualification basis."""
    if basis == "points_earned":
        return (
            "SELECT coalesce(sum(q.points), 0)::numeric FROM points_ledger q"
            f" WHERE q.member = {member_expr} AND q.occurred_at >= {start}"
            f" AND q.occurred_at <= {end}"
            " AND q.kind IN ('purchase_earn', 'referral_earn', 'bonus', 'reversal')"
            # A cancelled redemption gives spent points back: nothing was earned.
            " AND NOT (q.kind = 'reversal' AND q.cause_type = 'redemption')"
        )
    return (
        "SELECT coalesce(sum(q.total - q.returned_amount), 0) FROM purchases q"
        f" WHERE q.member = {member_expr} AND q.occurred_at >= {start}"
        f" AND q.occurred_at <= {end}"
    )


async def qualifying_value(
    conn: asyncpg.Connection, member_id: UUID, at: datetime, settings: schemas.TierSettings
) -> Decimal:
    result = await conn.fetchval(
        _value_query(settings.basis, "$1", "$2", "$3"),
        member_id,
        window_start(at, settings.window_months),
        at,
    )
    return Decimal(result).quantize(CENT)


# --- tier changes -------------------------------------------------------------------------


async def _change(
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


async def enrol(conn: asyncpg.Connection, member_id: UUID) -> None:
    """Every member starts on the lowest switched-on tier."""
    current = await ladder()
    lowest = current.enabled[0].code
    at = now()
    await conn.execute(
        "INSERT INTO member_tiers (id, member, tier, since) VALUES (gen_random_uuid(), $1, $2, $3)",
        member_id,
        lowest,
        at,
    )
    await conn.execute(
        """
        INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor, at)
        VALUES (gen_random_uuid(), $1, NULL, $2, 'initial', '', 'system', $3)
        """,
        member_id,
        lowest,
        at,
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


async def qualifying_values(
    conn: asyncpg.Connection,
    member_ids: list[UUID],
    at: datetime,
    settings: schemas.TierSettings,
    *,
    until: datetime | None = None,
) -> dict[UUID, Decimal]:
    """The members' values over the window ending at `at` (counting up to `until`, later
    than `at` for purchases dated a little ahead)."""
    value = _value_query(settings.basis, "m.id", "$2", "$3")
    rows = await conn.fetch(
        f"SELECT m.id, ({value}) AS value FROM unnest($1::uuid[]) AS m(id)",
        member_ids,
        window_start(at, settings.window_months),
        until or at,
    )
    return {row["id"]: Decimal(row["value"]) for row in rows}


@dataclass
class Upgrade:
    member: UUID
    from_tier: str
    to_tier: str
    value: Decimal


async def apply_upgrades(conn: asyncpg.Connection, upgrades: list[Upgrade], at: datetime) -> None:
    """Upgrades found while posting purchases, in the purchases' transaction, in one
    statement. A row changed meanwhile (the evaluation job) is left alone. Earning more than
    an override gave ends the override: an override is never a ceiling either."""
    if not upgrades:
        return
    await conn.execute(
        """
        WITH upgraded AS (
            UPDATE member_tiers t SET tier = v.to_tier, since = $5, below_since = NULL,
                override_tier = NULL, override_until = NULL, override_reason = NULL,
                override_by = NULL
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::numeric[])
                 AS v(member, from_tier, to_tier, value)
            WHERE t.member = v.member AND t.tier = v.from_tier
            RETURNING v.member, v.from_tier, v.to_tier, v.value
        ), history AS (
            INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor,
                qualifying_value, at)
            SELECT gen_random_uuid(), member, from_tier, to_tier, 'upgrade', '', 'system',
                   value, $5
            FROM upgraded
        )
        INSERT INTO outbox_events (id, topic, member, payload, created_at, attempts)
        SELECT gen_random_uuid(), 'tier.changed', member,
               jsonb_build_object('from_tier', from_tier, 'to_tier', to_tier, 'reason', 'upgrade'),
               now(), 0
        FROM upgraded
        """,
        [u.member for u in upgrades],
        [u.from_tier for u in upgrades],
        [u.to_tier for u in upgrades],
        [u.value for u in upgrades],
        at,
    )


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
        await _change(
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


# --- configuration ------------------------------------------------------------------------


def _validate_ladder(tiers: list[tuple[str, int, Decimal, bool]]) -> None:
    """(code, rank, threshold, enabled) for every tier: the ladder must make sense."""
    ranks = [rank for _, rank, _, _ in tiers]
    if len(ranks) != len(set(ranks)):
        raise InvalidInput("another tier already has this rank", field="rank")
    enabled = sorted((t for t in tiers if t[3]), key=lambda t: t[1])
    if not enabled:
        raise InvalidInput("at least one tier must stay switched on", field="enabled")
    if enabled[0][2] != 0:
        raise InvalidInput(
            f"the lowest switched-on tier ({enabled[0][0]}) must have threshold 0, so every"
            " member has a tier",
            field="threshold",
        )
    for lower, higher in itertools.pairwise(enabled):
        if higher[2] <= lower[2]:
            raise InvalidInput(
                f"thresholds must rise with rank: {higher[0]} ({higher[2]}) is not above"
                f" {lower[0]} ({lower[2]})",
                field="threshold",
            )


def _check_amount(value: Decimal, field: str, upper: Decimal) -> None:
    if not value.is_finite() or value < 0 or value > upper:
        raise InvalidInput(f"must be between 0 and {upper}", field=field)


async def list_tiers() -> list[schemas.Tier]:
    return (await ladder(fresh=True)).tiers


async def put_tier(code: str, data: schemas.TierBody, principal: Principal) -> schemas.Tier:
    _check_amount(data.threshold, "threshold", Decimal("999999999999"))
    _check_amount(data.earn_multiplier, "earn_multiplier", Decimal(10))
    async with db.transaction() as conn:
        # One ladder change at a time, so two edits cannot together make an invalid ladder.
        await conn.execute("LOCK TABLE tier_definitions IN SHARE ROW EXCLUSIVE MODE")
        rows = await conn.fetch("SELECT code, rank, threshold, enabled FROM tier_definitions")
        proposed = [
            (r["code"], r["rank"], Decimal(r["threshold"]), r["enabled"])
            for r in rows
            if r["code"] != code
        ]
        proposed.append((code, data.rank, data.threshold, data.enabled))
        _validate_ladder(proposed)
        level = data.service_level
        row = await conn.fetchrow(
            """
            INSERT INTO tier_definitions (code, name, rank, threshold, earn_multiplier, enabled,
                contact_cadence_days, response_time_hours, named_service_team,
                executive_sponsor_role, birthday_gift, event_invitations, benefits,
                updated_at, updated_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now(), $14)
            ON CONFLICT (code) DO UPDATE SET
                name = excluded.name, rank = excluded.rank, threshold = excluded.threshold,
                earn_multiplier = excluded.earn_multiplier, enabled = excluded.enabled,
                contact_cadence_days = excluded.contact_cadence_days,
                response_time_hours = excluded.response_time_hours,
                named_service_team = excluded.named_service_team,
                executive_sponsor_role = excluded.executive_sponsor_role,
                birthday_gift = excluded.birthday_gift,
                event_invitations = excluded.event_invitations, benefits = excluded.benefits,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by
            RETURNING *
            """,
            code,
            data.name,
            data.rank,
            data.threshold,
            data.earn_multiplier,
            data.enabled,
            level.contact_cadence_days,
            level.response_time_hours,
            level.named_service_team,
            level.executive_sponsor_role,
            level.birthday_gift,
            level.event_invitations,
            level.benefits,
            principal.label,
        )
    _forget_cache()
    return _tier_from_row(row)


async def get_settings_() -> schemas.TierSettings:
    return (await ladder(fresh=True)).settings


async def put_settings(
    data: schemas.TierSettingsBody, principal: Principal
) -> schemas.TierSettings:
    async with db.connection() as conn:
        await conn.execute(
            """
            INSERT INTO tier_settings (id, basis, window_months, grace_days, updated_at, updated_by)
            VALUES (1, $1, $2, $3, now(), $4)
            ON CONFLICT (id) DO UPDATE SET basis = excluded.basis,
                window_months = excluded.window_months, grace_days = excluded.grace_days,
                updated_at = excluded.updated_at, updated_by = excluded.updated_by
            """,
            data.basis,
            data.window_months,
            data.grace_days,
            principal.label,
        )
    _forget_cache()
    return await get_settings_()


async def distribution(principal: Principal | None = None) -> list[tuple[schemas.Tier, int]]:
    """How many members sit in each tier (switched-on tiers, and any still holding members),
    of those `principal` may see (all without one)."""
    current = await ladder()
    condition, args = members.visibility_sql(principal) if principal else ("true", [])
    async with db.connection() as conn:
        counts = dict(
            await conn.fetch(
                "SELECT t.tier, count(*) FROM member_tiers t"
                " JOIN members m ON m.id = t.member AND m.status = 'active'"
                f" LEFT JOIN staff s ON s.id = m.assigned_rep WHERE {condition}"
                " GROUP BY t.tier",
                *args,
            )
        )
    return [(t, counts.get(t.code, 0)) for t in current.tiers if t.enabled or counts.get(t.code)]


# --- a member's tier ----------------------------------------------------------------------


async def status(member_id: UUID, principal: Principal) -> schemas.MemberTier:
    """Where the member stands: tier, what it takes to keep it and to reach the next."""
    await members.get_member(member_id, principal)
    current = await ladder()
    at = now()
    settings = current.settings
    next_run = next_evaluation(at)
    async with db.connection() as conn:
        state = await conn.fetchrow("SELECT * FROM member_tiers WHERE member = $1", member_id)
        value = await qualifying_value(conn, member_id, at, settings)
        # What still counts at the next evaluation: purchases that will not have aged out.
        value_next = await conn.fetchval(
            _value_query(settings.basis, "$1", "$2", "$3"),
            member_id,
            window_start(next_run, settings.window_months),
            at,
        )
        history = await conn.fetch(
            "SELECT * FROM tier_changes WHERE member = $1 ORDER BY at DESC, id", member_id
        )
    tier = current.by_code(state["tier"]) or current.enabled[0]
    above = current.next_above(tier.rank)
    below_since = state["below_since"]
    override = None
    if state["override_until"] is not None:
        override = schemas.Override(
            tier=state["override_tier"],
            until=state["override_until"],
            reason=state["override_reason"],
            by=state["override_by"],
        )
    return schemas.MemberTier(
        member_id=member_id,
        tier=tier.code,
        name=tier.name,
        since=state["since"],
        basis=settings.basis,
        qualifying_value=value,
        window_start=window_start(at, settings.window_months),
        next_tier=schemas.NextTier(
            code=above.code,
            name=above.name,
            threshold=above.threshold,
            still_needed=max(Decimal(0), above.threshold - value),
        )
        if above
        else None,
        next_evaluation=next_run,
        needed_to_keep=max(Decimal(0), tier.threshold - Decimal(value_next)).quantize(CENT),
        below_threshold_since=below_since,
        downgrade_possible_from=below_since + timedelta(days=settings.grace_days)
        if below_since and override is None
        else None,
        override=override,
        service_level=tier.service_level,
        history=[
            schemas.TierChange(
                from_tier=row["from_tier"],
                to_tier=row["to_tier"],
                reason=row["reason"],
                note=row["note"],
                actor=row["actor"],
                qualifying_value=row["qualifying_value"],
                at=row["at"],
            )
            for row in history
        ],
    )


async def set_override(
    member_id: UUID, data: schemas.OverrideIn, principal: Principal
) -> schemas.MemberTier:
    """A manager sets a tier until a date; afterwards normal evaluation resumes."""
    if principal.role not in OVERRIDING_ROLES:
        raise PermissionDenied("only managers and above can override a tier")
    await members.get_member(member_id, principal)
    current = await ladder()
    tier = current.by_code(data.tier)
    if tier is None or not tier.enabled:
        raise InvalidInput("no switched-on tier with this code", field="tier")
    at = now()
    if data.until <= at:
        raise InvalidInput("must be in the future", field="until")
    if data.until > at + timedelta(days=3 * 366):
        raise InvalidInput("an override lasts at most three years", field="until")
    async with db.transaction() as conn:
        state = await conn.fetchrow(
            "SELECT tier FROM member_tiers WHERE member = $1 FOR UPDATE", member_id
        )
        await _change(
            conn,
            member_id,
            state["tier"],
            tier.code,
            reason="override",
            at=at,
            actor=principal.label,
            note=f"{data.reason} (until {data.until.isoformat()})",
            clear_override=False,
        )
        await conn.execute(
            """
            UPDATE member_tiers SET override_tier = $2, override_until = $3,
                override_reason = $4, override_by = $5
            WHERE member = $1
            """,
            member_id,
            tier.code,
            data.until,
            data.reason,
            principal.label,
        )
    return await status(member_id, principal)


async def end_override(member_id: UUID, principal: Principal) -> schemas.MemberTier:
    """End an override now: the member returns to the tier their qualification earns."""
    if principal.role not in OVERRIDING_ROLES:
        raise PermissionDenied("only managers and above can end an override")
    await members.get_member(member_id, principal)
    current = await ladder()
    at = now()
    async with db.transaction() as conn:
        state = await conn.fetchrow(
            "SELECT tier, override_until FROM member_tiers WHERE member = $1 FOR UPDATE",
            member_id,
        )
        if state["override_until"] is None:
            raise Conflict("this member has no override", field="override")
        value = await qualifying_value(conn, member_id, at, current.settings)
        await _change(
            conn,
            member_id,
            state["tier"],
            current.qualified(value).code,
            reason="override_end",
            at=at,
            value=value,
            actor=principal.label,
            note="ended early",
        )
    return await status(member_id, principal)


# --- evaluation and simulation -----------------------------------------------------------

# The ladder's steps are computed once (MATERIALIZED) and each member's value is one index
# range read (LATERAL): correlated subqueries per member made the job several times slower
# than the equivalent single statement.
_DECISION = """
WITH ladder AS MATERIALIZED (
    SELECT * FROM unnest($1::text[], $2::int[], $3::numeric[], $4::bool[])
        AS l(code, rank, threshold, enabled)
), steps AS MATERIALIZED (
    SELECT l.code, l.rank, l.enabled,
        (SELECT max(e.rank) FROM ladder e WHERE e.enabled AND e.rank < l.rank) AS rank_below
    FROM ladder l
), bands AS MATERIALIZED (
    -- Enabled tiers as value ranges; below the lowest threshold still means the lowest tier.
    SELECT rank,
        CASE WHEN row_number() OVER (ORDER BY rank) = 1 THEN NULL ELSE threshold END AS lower,
        lead(threshold) OVER (ORDER BY rank) AS upper
    FROM ladder WHERE enabled
), batch AS MATERIALIZED (
    -- A merged duplicate is off the ladder: the survivor holds its tier.
    SELECT t.member, t.tier, t.since, t.below_since, t.override_until
    FROM member_tiers t JOIN members m ON m.id = t.member AND m.status = 'active'
    WHERE t.member > $8 ORDER BY t.member LIMIT $9
), valued AS MATERIALIZED (
    -- Once per member (left to itself the planner may repeat it for every ladder band).
    SELECT b.member, v.value FROM batch b CROSS JOIN LATERAL ({value}) AS v(value)
), state AS (
    SELECT b.*, v.value, cur.rank AS current_rank, coalesce(cur.enabled, false) AS current_enabled,
        cur.rank_below, band.rank AS qualified_rank,
        coalesce(b.override_until > $6, false) AS override_active,
        coalesce(b.override_until <= $6, false) AS override_ended
    FROM batch b
    JOIN valued v USING (member)
    LEFT JOIN steps cur ON cur.code = b.tier
    JOIN bands band ON (band.lower IS NULL OR v.value >= band.lower)
        AND (band.upper IS NULL OR v.value < band.upper)
), decided AS (
    SELECT s.*,
        CASE
            WHEN s.override_active THEN s.current_rank
            WHEN s.override_ended OR s.current_rank IS NULL THEN s.qualified_rank
            WHEN s.qualified_rank > s.current_rank THEN s.qualified_rank
            WHEN NOT s.current_enabled
                OR (s.qualified_rank < s.current_rank AND s.below_since <= $7)
            THEN coalesce(s.rank_below, s.qualified_rank)
            ELSE s.current_rank
        END AS new_rank
    FROM state s
), result AS (
    SELECT d.member, d.tier, d.since, d.below_since, d.value, d.override_active,
        d.override_ended, l.code AS new_tier,
        CASE
            WHEN d.override_active THEN d.below_since
            WHEN d.qualified_rank >= d.new_rank THEN NULL
            WHEN d.new_rank IS DISTINCT FROM d.current_rank OR d.below_since IS NULL THEN $6
            ELSE d.below_since
        END AS new_below_since,
        CASE
            WHEN d.override_ended THEN 'override_end'
            WHEN d.new_rank > d.current_rank OR d.current_rank IS NULL THEN 'upgrade'
            WHEN d.new_rank < d.current_rank THEN 'downgrade'
        END AS reason
    FROM decided d JOIN ladder l ON l.rank = d.new_rank
)
"""

_APPLY = """
, updated AS (
    UPDATE member_tiers mt SET
        tier = r.new_tier,
        since = CASE WHEN r.new_tier <> r.tier THEN $6 ELSE mt.since END,
        below_since = r.new_below_since,
        override_tier = CASE WHEN r.override_ended THEN NULL ELSE mt.override_tier END,
        override_until = CASE WHEN r.override_ended THEN NULL ELSE mt.override_until END,
        override_reason = CASE WHEN r.override_ended THEN NULL ELSE mt.override_reason END,
        override_by = CASE WHEN r.override_ended THEN NULL ELSE mt.override_by END
    FROM result r
    -- Only rows nobody changed since we read them (a purchase may have upgraded one).
    WHERE mt.member = r.member AND mt.tier = r.tier AND mt.since = r.since
      AND mt.below_since IS NOT DISTINCT FROM r.below_since
      AND (r.new_tier <> r.tier OR r.override_ended
           OR r.new_below_since IS DISTINCT FROM r.below_since)
    RETURNING r.member, r.tier AS from_tier, r.new_tier AS to_tier, r.reason, r.value,
        r.below_since, r.new_below_since
), history AS (
    INSERT INTO tier_changes (id, member, from_tier, to_tier, reason, note, actor,
        qualifying_value, at)
    SELECT gen_random_uuid(), member, from_tier, to_tier, reason, '', 'evaluation', value, $6
    FROM updated WHERE reason IS NOT NULL
), announced AS (
    INSERT INTO outbox_events (id, topic, member, payload, created_at, attempts)
    SELECT gen_random_uuid(), 'tier.changed', member,
        jsonb_build_object('from_tier', from_tier, 'to_tier', to_tier, 'reason', reason),
        now(), 0
    FROM updated WHERE from_tier <> to_tier
)
SELECT
    (SELECT count(*) FROM batch) AS members,
    (SELECT member FROM batch ORDER BY member DESC LIMIT 1) AS last_member,
    count(*) FILTER (WHERE reason = 'upgrade') AS upgraded,
    count(*) FILTER (WHERE reason = 'downgrade') AS downgraded,
    count(*) FILTER (WHERE reason = 'override_end') AS overrides_ended,
    count(*) FILTER (WHERE below_since IS NULL AND new_below_since IS NOT NULL) AS grace_started
FROM updated
"""

_SIMULATE = """
SELECT tier, new_tier, count(*) AS members,
    count(*) FILTER (WHERE reason = 'upgrade') AS up,
    count(*) FILTER (WHERE reason = 'downgrade') AS down
FROM result GROUP BY tier, new_tier
"""


def _decision_sql(basis: str, tail: str) -> str:
    return _DECISION.format(value=_value_query(basis, "b.member", "$5", "$6")) + tail


def _ladder_args(tiers: list[tuple[str, int, Decimal, bool]]) -> list[Any]:
    return [
        [t[0] for t in tiers],
        [t[1] for t in tiers],
        [t[2] for t in tiers],
        [t[3] for t in tiers],
    ]


# While other work commits faster than this, the evaluation takes smaller batches and rests
# after each for twice as long as it took, so purchases keep their latency (shorter bursts
# of a busy core); on a quiet database it runs flat out in full batches.
BUSY_COMMITS_PER_SECOND = 20.0
REST_PER_BATCH_SECOND = 2.0
BUSY_BATCH_SIZE = 5_000


class _Traffic:
    """Transactions other sessions commit per second, from pg_stat_database (which backends
    update about once a second, hence the few seconds of history)."""

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int, int]] = deque()
        self.own = 0

    async def busy(self) -> bool:
        async with db.connection() as conn:
            commits = await conn.fetchval(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
            )
        self.own += 2  # this sample and the batch before it
        moment = time.monotonic()
        self.samples.append((moment, commits, self.own))
        while len(self.samples) > 2 and moment - self.samples[0][0] > 3:
            self.samples.popleft()
        first_at, first_commits, first_own = self.samples[0]
        if moment - first_at < 0.5:
            return False
        others = (commits - first_commits) - (self.own - first_own)
        return others / (moment - first_at) > BUSY_COMMITS_PER_SECOND


async def evaluate(at: datetime | None = None, batch_size: int = 20_000) -> schemas.Evaluation:
    """The periodic evaluation: upgrades, downgrades one step after the grace period, ends
    overrides. Set-based per batch of members; running it twice changes nothing more."""
    at = at or now()
    current = await ladder(fresh=True)
    settings = current.settings
    tiers = [(t.code, t.rank, t.threshold, t.enabled) for t in current.tiers]
    sql = _decision_sql(settings.basis, _APPLY)
    args = [
        *_ladder_args(tiers),
        window_start(at, settings.window_months),
        at,
        at - timedelta(days=settings.grace_days),
    ]
    totals = schemas.Evaluation(0, 0, 0, 0, 0)
    after = LOWEST_UUID
    traffic = _Traffic()
    busy = False
    while True:
        started = time.monotonic()
        async with db.transaction() as conn:
            # A batch lost in a crash is simply evaluated again by the next run, so it need
            # not wait for its WAL flush, which purchases would otherwise queue behind.
            await conn.execute("SET LOCAL synchronous_commit = off")
            row = await conn.fetchrow(
                sql, *args, after, min(batch_size, BUSY_BATCH_SIZE) if busy else batch_size
            )
        if not row["members"]:
            return totals
        totals = schemas.Evaluation(
            members=totals.members + row["members"],
            upgraded=totals.upgraded + row["upgraded"],
            downgraded=totals.downgraded + row["downgraded"],
            overrides_ended=totals.overrides_ended + row["overrides_ended"],
            grace_started=totals.grace_started + row["grace_started"],
        )
        after = row["last_member"]
        busy = await traffic.busy()
        if busy:
            await asyncio.sleep(REST_PER_BATCH_SECOND * (time.monotonic() - started))


async def simulate(data: schemas.SimulationIn, at: datetime | None = None) -> schemas.Simulation:
    """What an evaluation now would do with a proposed ladder; nothing is changed."""
    proposed = [(t.code, t.rank, t.threshold, t.enabled) for t in data.tiers]
    codes = [t[0] for t in proposed]
    if len(codes) != len(set(codes)):
        raise InvalidInput("each tier code once", field="tiers")
    for i, tier in enumerate(data.tiers):
        _check_amount(tier.threshold, f"tiers[{i}].threshold", Decimal("999999999999"))
    _validate_ladder(proposed)
    at = at or now()
    settings = (await ladder(fresh=True)).settings
    async with db.connection() as conn:
        rows = await conn.fetch(
            _decision_sql(settings.basis, _SIMULATE),
            *_ladder_args(proposed),
            window_start(at, settings.window_months),
            at,
            at - timedelta(days=settings.grace_days),
            LOWEST_UUID,
            None,
        )
    now_counts: dict[str, int] = {}
    after_counts: dict[str, int] = {}
    for row in rows:
        now_counts[row["tier"]] = now_counts.get(row["tier"], 0) + row["members"]
        after_counts[row["new_tier"]] = after_counts.get(row["new_tier"], 0) + row["members"]
    return schemas.Simulation(
        members=sum(row["members"] for row in rows),
        by_tier_now=now_counts,
        by_tier_after=after_counts,
        moving_up=sum(row["up"] for row in rows),
        moving_down=sum(row["down"] for row in rows),
        evaluated_at=at,
    )


async def tell_the_member(event: dict[str, Any]) -> None:
    """Tier changes reach the member's inbox (the portal shows it; channels come later)."""
    payload = event["payload"]
    current = await ladder()
    to_tier = current.by_code(payload["to_tier"])
    name = to_tier.name if to_tier else payload["to_tier"]
    if payload["reason"] == "downgrade":
        title = f"Your tier is now {name}"
        body = (
            f"Your qualifying spend over the last {current.settings.window_months} months is"
            f" below your previous tier, so your tier is now {name}. Shop with us to rise again."
        )
    else:
        title = f"Welcome to {name}"
        body = f"Your tier is now {name}. See your benefits in the portal."
    await events.notify_member(event, kind="tier.changed", title=title, body=body)
