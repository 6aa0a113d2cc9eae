"""Segments: a saved filter turned into one SQL statement with bound parameters.

`where_clause` is the only place a filter becomes SQL: every value travels as a `$n`
parameter, never inside the text. Purchase statistics are computed only when a condition
needs them, from the covering index `purchases_member_time`.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any
from uuid import UUID, uuid4

import msgspec

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, NotFound
from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.marketing import schemas
from loyalty.tiers import service as tiers


class Query:
    """SQL conditions on members `m` with their parameters, numbered from `start`."""

    def __init__(self, start: int = 1) -> None:
        self.params: list[Any] = []
        self.start = start
        self.conditions: list[str] = []
        self.stats = False
        # The parameter holding the start of the purchase window, when `stats` is set.
        self.window_param = ""

    def param(self, value: Any, cast: str = "") -> str:
        self.params.append(value)
        return f"${self.start + len(self.params) - 1}{cast}"

    def add(self, condition: str) -> None:
        self.conditions.append(condition)

    @property
    def where(self) -> str:
        return " AND ".join(self.conditions) or "true"


def where_clause(f: schemas.SegmentFilter, at: datetime, start: int = 1) -> Query:
    """The filter as conditions on `members m` (and `s`, the purchase statistics, when
    `q.stats` is set: join them with `stats_join`)."""
    q = Query(start)
    q.add("m.status = 'active'")
    # Parameters are numbered in the order these steps add them.
    _tier_conditions(q, f, at)
    _purchase_conditions(q, f, at)
    _points_and_referral_conditions(q, f)
    _archive_conditions(q, f)
    _rep_conditions(q, f)
    _value_conditions(q, f, at)
    return q


def _tier_conditions(q: Query, f: schemas.SegmentFilter, at: datetime) -> None:
    if f.tiers:
        q.add(
            "EXISTS (SELECT 1 FROM member_tiers t WHERE t.member = m.id"
            f" AND t.tier = ANY({q.param(list(f.tiers), '::text[]')}))"
        )
    if f.tier_joined_within_days is not None:
        since = at - timedelta(days=f.tier_joined_within_days)
        q.add(
            "EXISTS (SELECT 1 FROM member_tiers t WHERE t.member = m.id"
            f" AND t.since >= {q.param(since, '::timestamptz')})"
        )


def _purchase_conditions(q: Query, f: schemas.SegmentFilter, at: datetime) -> None:
    """Spend and purchases in the window, and recency: conditions on the statistics `s`."""
    spend = "coalesce(s.spend, 0)"
    count = "coalesce(s.purchases, 0)"
    if f.spend_min is not None:
        q.add(f"{spend} >= {q.param(f.spend_min, '::numeric')}")
    if f.spend_max is not None:
        q.add(f"{spend} <= {q.param(f.spend_max, '::numeric')}")
    if f.purchases_min is not None:
        q.add(f"{count} >= {q.param(f.purchases_min, '::bigint')}")
    if f.purchases_max is not None:
        q.add(f"{count} <= {q.param(f.purchases_max, '::bigint')}")
    if f.days_since_purchase_min is not None:
        before = at - timedelta(days=f.days_since_purchase_min)
        q.add(f"(s.last_purchase IS NULL OR s.last_purchase <= {q.param(before, '::timestamptz')})")
    if f.days_since_purchase_max is not None:
        after = at - timedelta(days=f.days_since_purchase_max)
        q.add(f"s.last_purchase >= {q.param(after, '::timestamptz')}")
    q.stats = any(
        v is not None
        for v in (
            f.spend_min,
            f.spend_max,
            f.purchases_min,
            f.purchases_max,
            f.days_since_purchase_min,
            f.days_since_purchase_max,
        )
    )
    if q.stats:
        q.window_param = q.param(at - timedelta(days=f.window_days), "::timestamptz")


def _points_and_referral_conditions(q: Query, f: schemas.SegmentFilter) -> None:
    if f.points_min is not None or f.points_max is not None:
        # A balance may be negative (debt): no lower bound unless one is given.
        lo = q.param(f.points_min, "::bigint")
        hi = q.param(f.points_max, "::bigint")
        q.add(
            "EXISTS (SELECT 1 FROM points_accounts a WHERE a.member = m.id"
            f" AND ({lo} IS NULL OR a.total >= {lo}) AND ({hi} IS NULL OR a.total <= {hi}))"
        )
    if f.referrals_min:  # at least 0 holds for everyone
        # The few referrers, grouped once, rather than a count per member.
        q.add(
            "m.id IN (SELECT r.referrer FROM referrals r WHERE r.status <> 'rejected'"
            f" GROUP BY r.referrer HAVING count(*) >= {q.param(f.referrals_min, '::bigint')})"
        )


def _archive_conditions(q: Query, f: schemas.SegmentFilter) -> None:
    """Birthday month, region, tags and consents: fields of the member's archive."""
    if f.birthday_months:
        q.add(
            "extract(month FROM m.birthday)::int"
            f" = ANY({q.param(list(f.birthday_months), '::int[]')})"
        )
    if f.regions:
        q.add(f"m.address->>'region' = ANY({q.param(list(f.regions), '::text[]')})")
    if f.tags:
        q.add(f"m.tags && {q.param(list(f.tags), '::varchar[]')}")
    for channel in f.consents:
        q.add(
            "m.contact_preferences->'consents' @> jsonb_build_array(jsonb_build_object("
            f"'channel', {q.param(channel, '::text')}, 'granted', true))"
        )


def _rep_conditions(q: Query, f: schemas.SegmentFilter) -> None:
    if f.rep_ids:
        q.add(f"m.assigned_rep = ANY({q.param(list(f.rep_ids), '::uuid[]')})")
    if f.departments:
        q.add(
            "m.assigned_rep IN (SELECT id FROM staff WHERE department"
            f" = ANY({q.param(list(f.departments), '::text[]')}))"
        )
    if f.unassigned is True:
        q.add("m.assigned_rep IS NULL")
    elif f.unassigned is False:
        q.add("m.assigned_rep IS NOT NULL")


def scored_sql(window: str) -> str:
    """Each active member who bought since `window` (a parameter) with their RFM value group
    (`grp`), spend, purchases and last purchase. Members with no purchase in the window are
    not in it: they are at risk."""
    return f"""
    WITH s AS (
        SELECT member, max(occurred_at) AS last_purchase, count(*) AS purchases,
               sum(total - returned_amount) AS spend
        FROM purchases WHERE occurred_at >= {window} GROUP BY member
    ), scored AS (
        SELECT s.*,
               ntile(5) OVER (ORDER BY last_purchase) AS r,
               ntile(5) OVER (ORDER BY purchases) AS f,
               ntile(5) OVER (ORDER BY spend) AS mo
        FROM s JOIN members m ON m.id = s.member AND m.status = 'active'
    )
    SELECT member, CASE
             WHEN r >= 4 AND (f + mo) >= 7 THEN 'valuable'
             WHEN r >= 4 THEN 'rising'
             WHEN r = 3 OR (f + mo) >= 7 THEN 'declining'
             ELSE 'at_risk'
           END AS grp, spend, purchases, last_purchase
    FROM scored"""


# The lifecycle stage of member `m` (as reps.performance's STAGE_CTE computes it) at `at`,
# from the purchase statistics `s`; the contacts are read only for members who never bought.
def stage_sql(at: str) -> str:
    return f"""(CASE
        WHEN s.last_purchase IS NULL THEN
            CASE WHEN (SELECT c.intent FROM contacts c WHERE c.member = m.id
                       AND c.intent IS NOT NULL ORDER BY c.occurred_at DESC LIMIT 1) = 'intent'
                 THEN 'prospect_with_intent' ELSE 'prospect_without_intent' END
        WHEN s.first_purchase >= {at} - interval '3 months' THEN 'new_customer'
        WHEN s.last_purchase >= {at} - interval '6 months' THEN 'regular'
        WHEN s.last_purchase >= {at} - interval '12 months' THEN 'lapsing'
        ELSE 'lost' END)"""


def _value_conditions(q: Query, f: schemas.SegmentFilter, at: datetime) -> None:
    """Value group, lifecycle stage and the fixed member list."""
    if f.value_groups:
        window = q.param(at - timedelta(days=f.window_days), "::timestamptz")
        groups = q.param(list(f.value_groups), "::text[]")
        condition = (
            f"m.id IN (SELECT v.member FROM ({scored_sql(window)}) v WHERE v.grp = ANY({groups}))"
        )
        if "at_risk" in f.value_groups:
            # No purchase in the window: at risk without a score.
            condition = (
                f"({condition} OR NOT EXISTS (SELECT 1 FROM purchases p"
                f" WHERE p.member = m.id AND p.occurred_at >= {window}))"
            )
        q.add(condition)
    if f.lifecycle_stages:
        if not q.stats:  # the stage reads the purchase statistics
            q.stats = True
            q.window_param = q.param(at - timedelta(days=f.window_days), "::timestamptz")
        at_param = q.param(at, "::timestamptz")
        q.add(f"{stage_sql(at_param)} = ANY({q.param(list(f.lifecycle_stages), '::text[]')})")
    if f.member_list is not None:
        q.add(
            "EXISTS (SELECT 1 FROM segment_members sm WHERE sm.member = m.id"
            f" AND sm.segment = {q.param(f.member_list, '::uuid')})"
        )


# Reachable on a channel: it is among the member's preferred channels, consent is granted
# and the address is known (what delivery asks of a channel). Plain expressions on the row,
# so a breakdown costs no subquery per member.
REACHABLE = {
    channel: f"""(m.{column} IS NOT NULL AND m.contact_preferences->'channels' ? '{channel}'
      AND m.contact_preferences->'consents'
          @> '[{{"channel": "{channel}", "granted": true}}]'::jsonb)"""
    for channel, column in (("email", "email"), ("sms", "phone"))
}


def from_clause(q: Query) -> str:
    """`members m`, with the purchase statistics when a condition needs them."""
    if not q.stats:
        return "members m"
    return from_clause_with(q.window_param)


def from_clause_with(w: str) -> str:
    """`members m` with the purchase statistics `s` (spend and purchases since `w`, a
    parameter; the last and first purchase ever)."""
    return f"""members m LEFT JOIN (
        SELECT member,
               sum(total - returned_amount) FILTER (WHERE occurred_at >= {w}) AS spend,
               count(*) FILTER (WHERE occurred_at >= {w}) AS purchases,
               max(occurred_at) AS last_purchase, min(occurred_at) AS first_purchase
        FROM purchases GROUP BY member
    ) s ON s.member = m.id"""


async def check(f: schemas.SegmentFilter) -> None:
    for name in ("spend_min", "spend_max"):
        value = getattr(f, name)
        if value is not None and not (0 <= value <= Decimal("9999999999.99")):
            raise InvalidInput("must be between 0 and 9999999999.99", field=f"filter.{name}")
    known = {t.code for t in (await tiers.ladder()).tiers}
    for i, code in enumerate(f.tiers):
        if code not in known:
            raise InvalidInput(f"no tier {code!r}", field=f"filter.tiers[{i}]")
    for lo, hi in (
        ("spend_min", "spend_max"),
        ("purchases_min", "purchases_max"),
        ("days_since_purchase_min", "days_since_purchase_max"),
        ("points_min", "points_max"),
    ):
        a, b = getattr(f, lo), getattr(f, hi)
        if a is not None and b is not None and b < a:
            raise InvalidInput(f"must not be below {lo}", field=f"filter.{hi}")


async def count(f: schemas.SegmentFilter, breakdown: bool = False) -> schemas.SegmentCount:
    """How many members the filter selects now: one statement. With `breakdown`, the same
    statement counts them by tier, and how many are reachable by email, by SMS, and by the
    portal inbox alone."""
    await check(f)
    q = where_clause(f, now())
    started = time.perf_counter()
    async with db.connection() as conn:
        if not breakdown:
            members = await conn.fetchval(
                f"SELECT count(*) FROM {from_clause(q)} WHERE {q.where}", *q.params
            )
            took = (time.perf_counter() - started) * 1000
            return schemas.SegmentCount(members=members, took_ms=took)
        rows = await conn.fetch(
            f"""
            SELECT t.tier, count(*) AS members,
                   count(*) FILTER (WHERE {REACHABLE["email"]}) AS email,
                   count(*) FILTER (WHERE {REACHABLE["sms"]}) AS sms,
                   count(*) FILTER (WHERE NOT ({REACHABLE["email"]} OR {REACHABLE["sms"]}))
                       AS portal_only
            FROM {from_clause(q)} LEFT JOIN member_tiers t ON t.member = m.id
            WHERE {q.where} GROUP BY 1
            """,
            *q.params,
        )
    by_tier = {row["tier"] or "": row["members"] for row in rows}
    by_channel = {
        channel: sum(row[channel] for row in rows) for channel in ("email", "sms", "portal_only")
    }
    return schemas.SegmentCount(
        members=sum(by_tier.values()),
        took_ms=(time.perf_counter() - started) * 1000,
        by_tier=by_tier,
        by_channel=by_channel,
    )


def decode_filter(value: Any) -> schemas.SegmentFilter:
    if isinstance(value, str):
        return msgspec.json.decode(value, type=schemas.SegmentFilter)
    return msgspec.convert(value or {}, schemas.SegmentFilter)


def encode_filter(f: schemas.SegmentFilter) -> str:
    return msgspec.json.encode(f).decode()


async def _segment(row: Any) -> schemas.Segment:
    f = decode_filter(row["filter"])
    return schemas.Segment(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        filter=f,
        members=(await count(f)).members,
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


async def create(
    data: schemas.SegmentCreate, principal: Principal, segment_id: UUID | None = None
) -> schemas.Segment:
    """A new segment; given `segment_id` (a form's idempotency key), a second call with the
    same id returns the segment the first one saved."""
    await check(data.filter)
    async with db.connection() as conn:
        row = await conn.fetchrow(
            """
            INSERT INTO segments (id, name, description, filter, created_by, created_at,
                updated_by, updated_at)
            VALUES ($1, $2, $3, $4::jsonb, $5, now(), $5, now())
            ON CONFLICT (id) DO NOTHING RETURNING *
            """,
            segment_id or uuid4(),
            data.name,
            data.description,
            encode_filter(data.filter),
            principal.label,
        )
        if row is None:
            row = await conn.fetchrow("SELECT * FROM segments WHERE id = $1", segment_id)
    return await _segment(row)


async def update(
    segment_id: UUID, data: schemas.SegmentUpdate, principal: Principal
) -> schemas.Segment:
    if data.filter is not msgspec.UNSET:
        await check(data.filter)
    async with db.transaction() as conn:
        row = await conn.fetchrow("SELECT * FROM segments WHERE id = $1 FOR UPDATE", segment_id)
        if row is None:
            raise NotFound("no such segment")
        row = await conn.fetchrow(
            """
            UPDATE segments SET name = $2, description = $3, filter = $4::jsonb,
                updated_by = $5, updated_at = now()
            WHERE id = $1 RETURNING *
            """,
            segment_id,
            row["name"] if data.name is msgspec.UNSET else data.name,
            row["description"] if data.description is msgspec.UNSET else data.description,
            row["filter"] if data.filter is msgspec.UNSET else encode_filter(data.filter),
            principal.label,
        )
    return await _segment(row)


async def get(segment_id: UUID) -> schemas.Segment:
    async with db.connection() as conn:
        row = await conn.fetchrow("SELECT * FROM segments WHERE id = $1", segment_id)
    if row is None:
        raise NotFound("no such segment")
    return await _segment(row)


async def list_segments() -> list[schemas.Segment]:
    async with db.connection() as conn:
        rows = await conn.fetch("SELECT * FROM segments ORDER BY name, id")
    return [await _segment(row) for row in rows]


async def list_segment(
    key: str, name: str, description: str, member_ids: list[UUID], principal: Principal
) -> tuple[schemas.Segment, int]:
    """The segment made once for `key`, selecting a fixed list of members; each member is
    added to it once, however often this runs. Returns it and how many members were new."""
    new_id = uuid4()
    async with db.transaction() as conn:
        segment_id = await conn.fetchval(
            """
            INSERT INTO segments (id, name, description, filter, created_by, created_at,
                updated_by, updated_at, key)
            VALUES ($1, $2, $3, $4::jsonb, $5, now(), $5, now(), $6)
            ON CONFLICT (key) DO NOTHING RETURNING id
            """,
            new_id,
            name,
            description,
            encode_filter(schemas.SegmentFilter(member_list=new_id)),
            principal.label,
            key,
        )
        if segment_id is None:
            row = await conn.fetchrow("SELECT id, filter FROM segments WHERE key = $1", key)
            segment_id = row["id"]
        added = await conn.fetch(
            """
            INSERT INTO segment_members (segment, member, added_at)
            SELECT $1, unnest($2::uuid[]), now() ON CONFLICT DO NOTHING RETURNING member
            """,
            segment_id,
            member_ids,
        )
    return await get(segment_id), len(added)


async def load_filter(conn: Any, segment_id: UUID) -> schemas.SegmentFilter:
    value = await conn.fetchval("SELECT filter FROM segments WHERE id = $1", segment_id)
    if value is None:
        raise NotFound("no such segment")
    return decode_filter(value)


# --- value groups (RFM) -------------------------------------------------------------------

GROUPS = ("valuable", "rising", "declining", "at_risk")

# Recency, frequency and monetary scores 1-5 by quintile among members who bought in the
# window; frequency and spend averaged into one value score. Valuable: recent and high
# value; rising: recent, lower value so far; declining: no longer recent (or fading) but
# valuable; at risk: the rest, and everyone with no purchase in the window.
VALUE_GROUPS_SQL = f"""
WITH grouped AS ({scored_sql("$1")})
SELECT grp, count(*) AS members, coalesce(avg(spend), 0) AS avg_spend,
       coalesce(avg(purchases), 0)::float8 AS avg_purchases,
       avg(extract(epoch FROM $2 - last_purchase) / 86400)::float8 AS avg_days
FROM grouped GROUP BY grp
UNION ALL
SELECT 'at_risk', count(*), 0, 0, NULL FROM members m
WHERE m.status = 'active' AND NOT EXISTS (
    SELECT 1 FROM purchases p WHERE p.member = m.id AND p.occurred_at >= $1)
"""


async def value_groups(window_days: int = 365) -> schemas.ValueGroups:
    at = now()
    async with db.connection() as conn:
        rows = await conn.fetch(VALUE_GROUPS_SQL, at - timedelta(days=window_days), at)
    merged: dict[str, dict[str, Any]] = {
        g: {"members": 0, "spend": Decimal(0), "purchases": 0.0, "days": 0.0, "dated": 0}
        for g in GROUPS
    }
    for row in rows:
        g = merged[row["grp"]]
        n = row["members"]
        g["members"] += n
        g["spend"] += row["avg_spend"] * n
        g["purchases"] += row["avg_purchases"] * n
        if row["avg_days"] is not None:
            g["days"] += row["avg_days"] * n
            g["dated"] += n
    total = sum(g["members"] for g in merged.values())
    groups = []
    for name in GROUPS:
        g = merged[name]
        n = g["members"]
        groups.append(
            schemas.ValueGroup(
                group=name,
                members=n,
                share=round(n / total, 4) if total else 0.0,
                avg_spend=round(g["spend"] / n, 2) if n else Decimal("0.00"),
                avg_purchases=round(g["purchases"] / n, 2) if n else 0.0,
                avg_days_since_purchase=round(g["days"] / g["dated"], 1) if g["dated"] else None,
            )
        )
    return schemas.ValueGroups(window_days=window_days, groups=groups, members=total)


def pyramid_svg(data: schemas.ValueGroups, labels: dict[str, str] | None = None) -> str:
    """The value groups as a pyramid: valuable at the top, widths by share of members;
    `labels` names the groups in the reader's language."""
    colours = {
        "valuable": "#1b7f5b",
        "rising": "#3a86c8",
        "declining": "#e0a030",
        "at_risk": "#c8463a",
    }
    rows = []
    width, height, gap = 600, 60, 6
    for i, group in enumerate(data.groups):
        # Each layer is wider than the one above; its label carries the real count.
        name = (labels or {}).get(group.group) or group.group.replace("_", " ")
        w = width * (i + 1) / len(data.groups)
        x = (width - w) / 2
        y = i * (height + gap)
        rows.append(
            f'<rect x="{x:.0f}" y="{y}" width="{w:.0f}" height="{height}"'
            f' fill="{colours[group.group]}"/>'
            f'<text x="{width / 2:.0f}" y="{y + height / 2 + 5}" text-anchor="middle"'
            f' fill="#fff" font-family="sans-serif" font-size="15">'
            f"{escape(name)}: {group.members} ({group.share:.0%})</text>"
        )
    total_h = len(data.groups) * (height + gap)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}"'
        f' viewBox="0 0 {width} {total_h}" role="img" aria-label="member value pyramid">'
        + "".join(rows)
        + "</svg>"
    )
