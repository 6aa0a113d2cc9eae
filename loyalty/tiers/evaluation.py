"""The periodic tier evaluation (upgrades, downgrades one step after the grace period, ends
overrides), set-based per batch of members, and the what-if simulation: the evaluation's
own SQL, not applied."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from loyalty.errors import InvalidInput
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.infrastructure.money import check_amount
from loyalty.tiers import schemas
from loyalty.tiers.ladder import ladder, validate_ladder, value_query, window_start

LOWEST_UUID = UUID(int=0)


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
    return _DECISION.format(value=value_query(basis, "b.member", "$5", "$6")) + tail


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


async def simulate(
    data: schemas.SimulationCreate, at: datetime | None = None
) -> schemas.Simulation:
    """What an evaluation now would do with a proposed ladder; nothing is changed."""
    proposed = [(t.code, t.rank, t.threshold, t.enabled) for t in data.tiers]
    codes = [t[0] for t in proposed]
    if len(codes) != len(set(codes)):
        raise InvalidInput("each tier code once", field="tiers")
    for i, tier in enumerate(data.tiers):
        check_amount(tier.threshold, f"tiers[{i}].threshold", Decimal("999999999999"))
    validate_ladder(proposed)
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
