"""An offer's figures: where its send stands (queued, sent, failed per channel) and its
results (delivered per channel, opened, redeemed, what it cost, and the same per member
tier). Read-only, for the API's results, the console's progress fragment and results page."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from loyalty.errors import NotFound
from loyalty.infrastructure import db
from loyalty.marketing import schemas

CHANNELS = ("email", "sms", "portal")


async def progress(offer_id: UUID) -> schemas.OfferProgress:
    """Members of the snapshot not reached yet, and deliveries per channel and state."""
    async with db.connection() as conn:
        offer = await conn.fetchrow(
            "SELECT status, audience_size FROM offers WHERE id = $1", offer_id
        )
        if offer is None:
            raise NotFound("no such offer")
        rows = await conn.fetch(
            """
            SELECT channel, status, count(*) AS n FROM offer_deliveries WHERE offer = $1
            GROUP BY channel, status
            """,
            offer_id,
        )
        audience = await conn.fetchval(
            "SELECT count(*) FROM offer_audience WHERE offer = $1", offer_id
        )
    counts: dict[tuple[str, str], int] = {(r["channel"], r["status"]): r["n"] for r in rows}
    delivered = sum(counts.values())
    return schemas.OfferProgress(
        offer_id=offer_id,
        status=offer["status"],
        audience=offer["audience_size"],
        queued=max(audience - delivered, 0),
        channels=[
            schemas.ChannelProgress(
                channel=channel,
                sent=counts.get((channel, "sent"), 0),
                failed=counts.get((channel, "failed"), 0),
                in_flight=counts.get((channel, "sending"), 0),
            )
            for channel in CHANNELS
        ],
        capped=sum(n for (_, status), n in counts.items() if status == "capped"),
    )


BY_TIER_SQL = """
WITH reached AS (
    SELECT d.id, d.member, d.channel, d.status, coalesce(t.tier, '') AS tier
    FROM offer_deliveries d LEFT JOIN member_tiers t ON t.member = d.member
    WHERE d.offer = $1
), inbox AS (
    SELECT r.tier, count(*) AS portal, count(n.read_at) AS opened
    FROM reached r JOIN member_notifications n ON n.event = r.id GROUP BY r.tier
), used AS (
    SELECT coalesce(t.tier, '') AS tier, count(*) AS n
    FROM offer_vouchers v LEFT JOIN member_tiers t ON t.member = v.member
    WHERE v.offer = $1 AND v.used_at IS NOT NULL GROUP BY 1
), bonus AS (
    SELECT coalesce(t.tier, '') AS tier, count(*) AS n, sum(b.points)::bigint AS points
    FROM offer_bonus_points b LEFT JOIN member_tiers t ON t.member = b.member
    WHERE b.offer = $1 GROUP BY 1
), tiers AS (
    SELECT tier FROM reached UNION SELECT tier FROM used UNION SELECT tier FROM bonus
)
SELECT tiers.tier,
       (SELECT count(*) FROM reached r WHERE r.tier = tiers.tier) AS audience,
       (SELECT count(*) FROM reached r WHERE r.tier = tiers.tier AND r.status = 'sent'
          AND r.channel IN ('email', 'sms')) AS delivered,
       coalesce(inbox.portal, 0) AS portal, coalesce(inbox.opened, 0) AS opened,
       coalesce(used.n, 0) + coalesce(bonus.n, 0) AS redeemed,
       coalesce(bonus.points, 0) AS points_issued
FROM tiers LEFT JOIN inbox USING (tier) LEFT JOIN used USING (tier) LEFT JOIN bonus USING (tier)
ORDER BY tiers.tier
"""


async def by_tier(conn: Any, offer_id: UUID) -> list[schemas.TierResult]:
    """The offer's results per member's current tier (members reached, not the snapshot)."""
    rows = await conn.fetch(BY_TIER_SQL, offer_id)
    return [db.from_row(schemas.TierResult, row) for row in rows]


# --- results ------------------------------------------------------------------------------


async def results(offer_id: UUID) -> schemas.OfferResults:
    async with db.connection() as conn:
        offer = await conn.fetchrow(
            "SELECT status, audience_size, benefit FROM offers WHERE id = $1", offer_id
        )
        if offer is None:
            raise NotFound("no such offer")
        counts = await conn.fetchrow(
            """
            SELECT
              count(*) FILTER (WHERE status = 'sent' AND channel = 'email') AS email,
              count(*) FILTER (WHERE status = 'sent' AND channel = 'sms') AS sms,
              count(*) FILTER (WHERE status = 'failed') AS failed,
              count(*) FILTER (WHERE status = 'failed' AND next_attempt_at IS NOT NULL) AS waiting,
              count(*) FILTER (WHERE status = 'capped') AS capped,
              count(*) FILTER (WHERE status = 'sending') AS in_flight
            FROM offer_deliveries WHERE offer = $1
            """,
            offer_id,
        )
        inbox = await conn.fetchrow(
            """
            SELECT count(*) AS portal, count(n.read_at) AS opened
            FROM offer_deliveries d JOIN member_notifications n ON n.event = d.id
            WHERE d.offer = $1
            """,
            offer_id,
        )
        bonus_row = await conn.fetchrow(
            """
            SELECT count(*) AS purchases, coalesce(sum(points), 0)::bigint AS points
            FROM offer_bonus_points WHERE offer = $1
            """,
            offer_id,
        )
        used = await conn.fetchval(
            "SELECT count(*) FROM offer_vouchers WHERE offer = $1 AND used_at IS NOT NULL",
            offer_id,
        )
        issued = await conn.fetchval(
            "SELECT count(*) FROM offer_vouchers WHERE offer = $1 AND member IS NOT NULL",
            offer_id,
        )
        tiers_rows = await by_tier(conn, offer_id)
        failures = await conn.fetch(
            """
            SELECT d.member, d.channel, coalesce(d.error, '') AS error FROM offer_deliveries d
            WHERE d.offer = $1 AND d.status = 'failed' ORDER BY d.created_at DESC LIMIT 20
            """,
            offer_id,
        )
    return schemas.OfferResults(
        offer_id=offer_id,
        status=offer["status"],
        audience=offer["audience_size"],
        delivered={"email": counts["email"], "sms": counts["sms"], "portal": inbox["portal"]},
        failed=counts["failed"],
        waiting_retry=counts["waiting"],
        capped=counts["capped"],
        in_flight=counts["in_flight"],
        opened=inbox["opened"],
        redeemed=used + bonus_row["purchases"],
        points_issued=bonus_row["points"],
        failures=[
            {"member_id": str(f["member"]), "channel": f["channel"], "error": f["error"]}
            for f in failures
        ],
        by_tier=tiers_rows,
        vouchers_issued=issued,
    )
