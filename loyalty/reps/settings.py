"""The reps domain's configuration (the `rep_settings` row): protection, reclaim and hand-out
limits, contact deadlines, completeness and rotation; and the rep levels that tiers require."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from loyalty.audit import service as audit
from loyalty.auth import Principal
from loyalty.infrastructure import db
from loyalty.reps import schemas

# A rep's levels, lowest first: `tier_min_level` names the least a tier's members need.
LEVELS = ("junior", "regular", "senior")


def level_below(level: str, needed: str | None) -> bool:
    """Whether a rep of `level` is too junior for members that need a `needed` rep."""
    return bool(needed) and LEVELS.index(level) < LEVELS.index(needed)


def _settings_schema(row: Any) -> schemas.RepSettings:
    return db.from_row(
        schemas.RepSettings,
        row,
        tier_no_deal_months=_json(row["tier_no_deal_months"]),
        tier_min_level=_json(row["tier_min_level"]),
        completeness_fields=row["completeness_fields"] or [],
    )


def _json(value: Any) -> dict:
    return json.loads(value) if isinstance(value, str) else dict(value or {})


async def get_rep_settings(conn: asyncpg.Connection | None = None) -> schemas.RepSettings:
    if conn is None:
        async with db.connection() as conn:
            return await get_rep_settings(conn)
    row = await conn.fetchrow("SELECT * FROM rep_settings WHERE id = 1")
    if row is None:
        row = await conn.fetchrow(
            """
            INSERT INTO rep_settings (id, protection_days, inactive_months, no_deal_months,
                tier_no_deal_months, warning_days, new_rep_days, daily_pool_cap,
                handover_days, contact_deadline_hour, updated_at, updated_by)
            VALUES (1, 30, 3, 6, '{}', 7, 30, 20, 7, 10, now(), 'system')
            ON CONFLICT (id) DO UPDATE SET id = 1 RETURNING *
            """
        )
    return _settings_schema(row)


async def put_rep_settings(
    data: schemas.RepSettingsUpdate, principal: Principal
) -> schemas.RepSettings:
    async with db.transaction() as conn:
        await get_rep_settings(conn)
        before = await conn.fetchrow("SELECT * FROM rep_settings WHERE id = 1 FOR UPDATE")
        row = await conn.fetchrow(
            """
            UPDATE rep_settings SET protection_days = $1, inactive_months = $2,
                no_deal_months = $3, tier_no_deal_months = $4::jsonb, warning_days = $5,
                new_rep_days = $6, daily_pool_cap = $7, handover_days = $8,
                contact_deadline_hour = $9, updated_at = now(), updated_by = $10,
                tier_min_level = $11::jsonb, refusal_retry_days = $12,
                completeness_fields = $13, completeness_days = $14, rotation_months = $15,
                introduction_days = $16
            WHERE id = 1 RETURNING *
            """,
            data.protection_days,
            data.inactive_months,
            data.no_deal_months,
            json.dumps(data.tier_no_deal_months),
            data.warning_days,
            data.new_rep_days,
            data.daily_pool_cap,
            data.handover_days,
            data.contact_deadline_hour,
            principal.label,
            json.dumps(data.tier_min_level),
            data.refusal_retry_days,
            data.completeness_fields,
            data.completeness_days,
            data.rotation_months,
            data.introduction_days,
        )
        await audit.record("rep_settings.update", "rep_settings", 1, before=before, after=row)
    return _settings_schema(row)
