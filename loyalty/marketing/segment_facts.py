"""Segment facts: what the segment builder's live counts read instead of the members table.

`rebuild` (the only writer) fills `segment_facts` set-based with one INSERT ... SELECT: one
narrow row per active member with the answers to every filter condition (tier, region,
birthday month, tags, granted consents, reachability, rep and department, points, referrals,
purchases and spend over the default window, value group, lifecycle stage). The worker runs
it every 5 minutes (`refresh_segment_facts`), and staff can run it now from the jobs page.

`count` answers from the facts when they are fresh (built within `MAX_AGE`) and the filter
is one they can answer, else from the live tables (`segments.count`), and says which: a
count from the facts carries `as_of`, the time of the build. The staleness accepted is the
build interval (minutes): a count shown while editing a segment, like a segment count read
from a replica (issue #25 accepts seconds there). The audience snapshot at send time always
reads the live tables.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.marketing import schemas, segments

# The purchase window the facts are built over: the filter's default.
WINDOW_DAYS = 365
# Older facts are not used (the worker is down or behind): counts fall back to live.
MAX_AGE = timedelta(minutes=15)
# The rebuilds take turns (the cron job and a run from the jobs page may overlap).
_LOCK = 0x5E6F_AC75


def _rebuild_sql() -> str:
    """One statement: every active member's facts, at `$1` (now), window start `$2`."""
    reachable = segments.REACHABLE
    return f"""
    INSERT INTO segment_facts (member, tier, tier_since, region, birthday_month, tags,
        consents, email, sms, rep, department, points, referrals, spend, purchases,
        last_purchase, value_group, stage)
    WITH v AS ({segments.scored_sql("$2::timestamptz")}),
    r AS (SELECT referrer, count(*) AS n FROM referrals WHERE status <> 'rejected'
          GROUP BY referrer)
    SELECT m.id, t.tier, t.since, m.address->>'region', extract(month FROM m.birthday)::int,
           m.tags,
           ARRAY(SELECT DISTINCT e->>'channel' FROM jsonb_array_elements(
                     CASE WHEN jsonb_typeof(m.contact_preferences->'consents') = 'array'
                          THEN m.contact_preferences->'consents' ELSE '[]'::jsonb END) e
                 WHERE jsonb_typeof(e->'channel') = 'string'
                   AND e->'granted' = 'true'::jsonb),
           {reachable["email"]}, {reachable["sms"]},
           m.assigned_rep, st.department, a.total, coalesce(r.n, 0),
           coalesce(s.spend, 0), coalesce(s.purchases, 0), s.last_purchase,
           coalesce(v.grp, 'at_risk'), {segments.stage_sql("$1::timestamptz")}
    FROM {segments.from_clause_with("$2::timestamptz")}
    LEFT JOIN member_tiers t ON t.member = m.id
    LEFT JOIN v ON v.member = m.id
    LEFT JOIN r ON r.referrer = m.id
    LEFT JOIN points_accounts a ON a.member = m.id
    LEFT JOIN staff st ON st.id = m.assigned_rep
    WHERE m.status = 'active'
    """


async def rebuild() -> schemas.SegmentFactsBuild:
    """Rebuild every member's facts in one transaction: counts read the previous facts until
    it commits (a DELETE, not a TRUNCATE, so they never wait for it)."""
    started = time.perf_counter()
    at = now()
    async with db.transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute("DELETE FROM segment_facts")
        status = await conn.execute(_rebuild_sql(), at, at - timedelta(days=WINDOW_DAYS))
        members = int(status.split()[-1])
        took = round((time.perf_counter() - started) * 1000)
        await conn.execute(
            """
            INSERT INTO segment_facts_builds (id, built_at, window_days, members, took_ms)
            VALUES (1, $1, $2, $3, $4)
            ON CONFLICT (id) DO UPDATE SET built_at = $1, window_days = $2, members = $3,
                took_ms = $4
            """,
            at,
            WINDOW_DAYS,
            members,
            took,
        )
    # The old rows are dead now: reclaim them so counts scan one copy of the facts, and give
    # the planner the new figures (stale ones made it sort a million rows on disk).
    async with db.connection() as conn:
        if not conn.is_in_transaction():
            await conn.execute("VACUUM (ANALYZE) segment_facts")
    return schemas.SegmentFactsBuild(built_at=at, members=members, took_ms=took)


async def last_build() -> schemas.SegmentFactsBuild | None:
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT built_at, members, took_ms, window_days FROM segment_facts_builds WHERE id = 1"
        )
    if row is None or row["window_days"] != WINDOW_DAYS:
        return None
    return schemas.SegmentFactsBuild(
        built_at=row["built_at"], members=row["members"], took_ms=row["took_ms"]
    )


class _Facts:
    """Conditions on `segment_facts x` with their parameters."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.conditions: list[str] = []

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        return f"${len(self.params)}{cast}"

    @property
    def where(self) -> str:
        return " AND ".join(self.conditions) or "true"


# The conditions that read the purchase window: answered only when it is the facts' window.
_WINDOWED = (
    "spend_min",
    "spend_max",
    "purchases_min",
    "purchases_max",
    "value_groups",
    "lifecycle_stages",
)


def facts_query(f: schemas.SegmentFilter, at: datetime) -> _Facts | None:
    """The filter as conditions on the facts, or None when they cannot answer it: a fixed
    member list, or a window other than the facts' (each condition means what
    `segments.where_clause` means by it)."""
    if f.member_list is not None:
        return None
    if f.window_days != WINDOW_DAYS and any(
        getattr(f, name) not in (None, []) for name in _WINDOWED
    ):
        return None
    q = _Facts()
    add = q.conditions.append
    if f.tiers:
        add(f"x.tier = ANY({q.param(list(f.tiers), '::text[]')})")
    if f.tier_joined_within_days is not None:
        since = at - timedelta(days=f.tier_joined_within_days)
        add(f"x.tier_since >= {q.param(since, '::timestamptz')}")
    if f.spend_min is not None:
        add(f"x.spend >= {q.param(f.spend_min, '::numeric')}")
    if f.spend_max is not None:
        add(f"x.spend <= {q.param(f.spend_max, '::numeric')}")
    if f.purchases_min is not None:
        add(f"x.purchases >= {q.param(f.purchases_min, '::bigint')}")
    if f.purchases_max is not None:
        add(f"x.purchases <= {q.param(f.purchases_max, '::bigint')}")
    if f.days_since_purchase_min is not None:
        before = at - timedelta(days=f.days_since_purchase_min)
        add(f"(x.last_purchase IS NULL OR x.last_purchase <= {q.param(before, '::timestamptz')})")
    if f.days_since_purchase_max is not None:
        after = at - timedelta(days=f.days_since_purchase_max)
        add(f"x.last_purchase >= {q.param(after, '::timestamptz')}")
    if f.points_min is not None or f.points_max is not None:
        add("x.points IS NOT NULL")  # no points account: not selected, as live
        if f.points_min is not None:
            add(f"x.points >= {q.param(f.points_min, '::bigint')}")
        if f.points_max is not None:
            add(f"x.points <= {q.param(f.points_max, '::bigint')}")
    if f.referrals_min:
        add(f"x.referrals >= {q.param(f.referrals_min, '::int')}")
    if f.birthday_months:
        add(f"x.birthday_month = ANY({q.param(list(f.birthday_months), '::int[]')})")
    if f.regions:
        add(f"x.region = ANY({q.param(list(f.regions), '::text[]')})")
    if f.tags:
        add(f"x.tags && {q.param(list(f.tags), '::varchar[]')}")
    if f.consents:
        add(f"x.consents @> {q.param(list(f.consents), '::text[]')}")
    if f.rep_ids:
        add(f"x.rep = ANY({q.param(list(f.rep_ids), '::uuid[]')})")
    if f.departments:
        add(f"x.department = ANY({q.param(list(f.departments), '::text[]')})")
    if f.unassigned is True:
        add("x.rep IS NULL")
    elif f.unassigned is False:
        add("x.rep IS NOT NULL")
    if f.value_groups:
        add(f"x.value_group = ANY({q.param(list(f.value_groups), '::text[]')})")
    if f.lifecycle_stages:
        add(f"x.stage = ANY({q.param(list(f.lifecycle_stages), '::text[]')})")
    return q


async def count_from_facts(
    f: schemas.SegmentFilter, breakdown: bool, at: datetime | None = None
) -> schemas.SegmentCount | None:
    """The count from the facts, or None when they are missing, stale or cannot answer."""
    at = at or now()
    q = facts_query(f, at)
    if q is None:
        return None
    started = time.perf_counter()
    async with db.connection() as conn:
        built = await conn.fetchrow(
            "SELECT built_at, window_days FROM segment_facts_builds WHERE id = 1"
        )
        if built is None or built["window_days"] != WINDOW_DAYS or built["built_at"] < at - MAX_AGE:
            return None
        if not breakdown:
            members = await conn.fetchval(
                f"SELECT count(*) FROM segment_facts x WHERE {q.where}", *q.params
            )
            return schemas.SegmentCount(
                members=members,
                took_ms=(time.perf_counter() - started) * 1000,
                as_of=built["built_at"],
            )
        rows = await conn.fetch(
            f"""
            SELECT x.tier, count(*) AS members,
                   count(*) FILTER (WHERE x.email) AS email,
                   count(*) FILTER (WHERE x.sms) AS sms,
                   count(*) FILTER (WHERE NOT (x.email OR x.sms)) AS portal_only
            FROM segment_facts x WHERE {q.where} GROUP BY 1
            """,
            *q.params,
        )
    by_tier = {row["tier"] or "": row["members"] for row in rows}
    return schemas.SegmentCount(
        members=sum(by_tier.values()),
        took_ms=(time.perf_counter() - started) * 1000,
        by_tier=by_tier,
        by_channel={c: sum(row[c] for row in rows) for c in ("email", "sms", "portal_only")},
        as_of=built["built_at"],
    )


async def count(f: schemas.SegmentFilter, breakdown: bool = False) -> schemas.SegmentCount:
    """How many members the filter selects: from the segment facts when they are fresh and
    can answer (`as_of` says when they were built), else now from the live tables."""
    await segments.check(f)
    counted = await count_from_facts(f, breakdown)
    if counted is not None:
        return counted
    return await segments.count(f, breakdown)
