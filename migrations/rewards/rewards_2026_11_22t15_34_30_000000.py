"""Catalog and redemption constraints the service relies on."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T15:34:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "rewards constraints and indexes"

STATEMENTS = """
ALTER TABLE rewards ADD CONSTRAINT rewards_cost_positive CHECK (points_cost > 0);
-- Stock can never go below zero, whatever the code does.
ALTER TABLE rewards ADD CONSTRAINT rewards_stock_non_negative CHECK (stock IS NULL OR stock >= 0);
ALTER TABLE rewards ADD CONSTRAINT rewards_kind CHECK (
    kind IN ('goods', 'voucher', 'event_seat', 'bonus_service'));
ALTER TABLE redemptions ADD CONSTRAINT redemptions_quantity_positive CHECK (quantity > 0);
ALTER TABLE redemptions ADD CONSTRAINT redemptions_status CHECK (
    status IN ('requested', 'fulfilled', 'cancelled'));
CREATE UNIQUE INDEX reward_vouchers_code ON reward_vouchers (reward, code);
CREATE INDEX reward_vouchers_unissued ON reward_vouchers (reward) WHERE redemption IS NULL;
CREATE INDEX redemptions_member_reward ON redemptions (member, reward) WHERE status <> 'cancelled';
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="rewards", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
