"""Automatic offers: an approved offer with `auto_kind` is a template. Every day the worker
makes (once) the month's instance of each template and sends it to the members who newly
qualify; each member gets a month's instance at most once.

- birthday: members whose birthday is in this month;
- welcome: members who entered their current tier (one of the target tiers) this month;
- winback: members with no purchase for `at_risk_days` and not yet `churn_days` (about to be
  reclaimed into the pool, or at risk of leaving).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import msgspec

from loyalty.infrastructure import db
from loyalty.infrastructure.clock import now
from loyalty.marketing import delivery, segments
from loyalty.marketing.schemas import SegmentFilter
from loyalty.settings import get_settings


def _month_bounds(at: datetime) -> tuple[datetime, datetime]:
    local = at.astimezone(get_settings().tz)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


async def instance_filter(conn: Any, template: Any, at: datetime) -> SegmentFilter:
    base = (
        await segments.load_filter(conn, template["segment"])
        if template["segment"] is not None
        else SegmentFilter()
    )
    start, _ = _month_bounds(at)
    kind = template["auto_kind"]
    if kind == "birthday":
        return msgspec.structs.replace(base, birthday_months=[start.month])
    if kind == "welcome":
        return msgspec.structs.replace(base, tier_joined_within_days=max((at - start).days, 0) + 1)
    settings = await conn.fetchrow("SELECT * FROM marketing_settings WHERE id = 1")
    return msgspec.structs.replace(
        base,
        days_since_purchase_min=settings["at_risk_days"],
        days_since_purchase_max=settings["churn_days"],
        purchases_min=1,
        window_days=max(settings["churn_days"] * 4, 365),
    )


async def ensure_instance(template: Any, at: datetime) -> UUID:
    """The template's offer for this month: created once (unique template and period)."""
    start, end = _month_bounds(at)
    period = start.strftime("%Y-%m")
    async with db.transaction() as conn:
        f = await instance_filter(conn, template, at)
        await conn.execute(
            """
            INSERT INTO offers (id, title_en, title_zh, body_en, body_zh, valid_from, valid_until,
                target_tiers, segment, benefit, bonus_multiplier, reward, reward_points_cost,
                auto_kind, template, period, status, audience_filter, created_by, created_at,
                updated_by, updated_at, approved_by, approved_at)
            SELECT $1, t.title_en, t.title_zh, t.body_en, t.body_zh, $3, $4, t.target_tiers,
                   t.segment, t.benefit, t.bonus_multiplier, t.reward, t.reward_points_cost,
                   t.auto_kind, t.id, $5, 'approved', $6::jsonb, 'system', now(), 'system',
                   now(), t.approved_by, t.approved_at
            FROM offers t WHERE t.id = $2
            ON CONFLICT (template, period) WHERE template IS NOT NULL DO NOTHING
            """,
            uuid4(),
            template["id"],
            start,
            end,
            period,
            segments.encode_filter(f),
        )
        instance = await conn.fetchval(
            "SELECT id FROM offers WHERE template = $1 AND period = $2", template["id"], period
        )
        # The filter moves with the day (welcome: since the month began).
        await conn.execute(
            "UPDATE offers SET audience_filter = $2::jsonb WHERE id = $1",
            instance,
            segments.encode_filter(f),
        )
    return instance


async def run(at: datetime | None = None, *, sms: Any = None) -> int:
    """Every approved template: this month's instance, newcomers snapshotted and sent."""
    at = at or now()
    async with db.connection() as conn:
        templates = await conn.fetch(
            """
            SELECT * FROM offers
            WHERE auto_kind IS NOT NULL AND template IS NULL AND status = 'approved'
              AND valid_from <= $1 AND valid_until > $1
            """,
            at,
        )
    sent = 0
    for template in templates:
        instance = await ensure_instance(template, at)
        sent += await delivery.send_offer(instance, sms=sms)
    return sent


SCHEDULE = "09:00"  # the worker's daily `automatic_offers` cron (loyalty/worker.py)


async def overview(runs: int = 3) -> list[dict[str, Any]]:
    """Every automatic template (newest first) with its last `runs` monthly instances:
    members reached, messages sent and failed, opened in the portal."""
    async with db.connection() as conn:
        templates = await conn.fetch(
            """
            SELECT * FROM offers WHERE auto_kind IS NOT NULL AND template IS NULL
            ORDER BY created_at DESC, id
            """
        )
        instances = await conn.fetch(
            """
            SELECT i.template, i.id, i.period, i.status, coalesce(i.audience_size, 0) AS audience,
                   count(d.id) FILTER (WHERE d.status = 'sent' AND d.channel <> 'portal') AS sent,
                   count(d.id) FILTER (WHERE d.status = 'failed') AS failed,
                   count(n.read_at) AS opened
            FROM offers i
            LEFT JOIN offer_deliveries d ON d.offer = i.id
            LEFT JOIN member_notifications n ON n.event = d.id
            WHERE i.template = ANY($1::uuid[])
            GROUP BY i.id ORDER BY i.period DESC
            """,
            [t["id"] for t in templates],
        )
    by_template: dict[UUID, list[dict[str, Any]]] = {}
    for row in instances:
        found = by_template.setdefault(row["template"], [])
        if len(found) < runs:
            found.append(dict(row))
    return [{"template": t, "runs": by_template.get(t["id"], [])} for t in templates]
