"""Marketing constraints, keys and indexes, and the seeded settings."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "marketing constraints, indexes and settings"

STATEMENTS = """
INSERT INTO marketing_settings (id, frequency_cap, cap_days, max_attempts, retry_seconds,
    churn_days, at_risk_days, falling_ratio, updated_at, updated_by)
VALUES (1, 2, 7, 4, 300, 90, 60, 0.5, now(), 'system');
ALTER TABLE marketing_settings ADD CONSTRAINT marketing_settings_one_row CHECK (id = 1);
-- The audience is a snapshot keyed by (offer, member): a second snapshot adds nobody twice.
ALTER TABLE offer_audience DROP CONSTRAINT offer_audience_pkey;
ALTER TABLE offer_audience DROP COLUMN id;
ALTER TABLE offer_audience ADD PRIMARY KEY (offer, member);
ALTER TABLE offer_audience ADD CONSTRAINT offer_audience_offer_fk
    FOREIGN KEY (offer) REFERENCES offers (id) ON DELETE CASCADE;
-- At most one delivery of an offer to a member, however often the job runs.
CREATE UNIQUE INDEX offer_deliveries_once ON offer_deliveries (offer, member);
ALTER TABLE offer_deliveries ADD CONSTRAINT offer_deliveries_offer_fk
    FOREIGN KEY (offer) REFERENCES offers (id) ON DELETE CASCADE;
-- The frequency cap counts a member's recent marketing messages.
CREATE INDEX offer_deliveries_member_time ON offer_deliveries (member, created_at)
    WHERE channel IN ('email', 'sms');
CREATE INDEX offer_deliveries_retry ON offer_deliveries (next_attempt_at)
    WHERE status = 'failed';
ALTER TABLE offer_deliveries ADD CONSTRAINT offer_deliveries_status CHECK (
    status IN ('sending', 'sent', 'failed', 'capped'));
ALTER TABLE offers ADD CONSTRAINT offers_status CHECK (
    status IN ('draft', 'approved', 'sending', 'sent', 'cancelled'));
ALTER TABLE offers ADD CONSTRAINT offers_benefit CHECK (
    benefit IN ('none', 'voucher', 'bonus_points', 'reward_price'));
ALTER TABLE offers ADD CONSTRAINT offers_validity CHECK (valid_until > valid_from);
ALTER TABLE offers ADD CONSTRAINT offers_bonus CHECK (
    benefit <> 'bonus_points' OR bonus_multiplier > 1);
CREATE UNIQUE INDEX offers_instance ON offers (template, period) WHERE template IS NOT NULL;
CREATE INDEX offers_bonus_live ON offers (valid_until)
    WHERE benefit = 'bonus_points' AND status IN ('sending', 'sent');
CREATE UNIQUE INDEX offer_vouchers_code ON offer_vouchers (offer, code);
CREATE INDEX offer_vouchers_free ON offer_vouchers (offer) WHERE member IS NULL;
CREATE UNIQUE INDEX offer_bonus_points_once ON offer_bonus_points (offer, purchase);
CREATE INDEX offer_bonus_points_offer ON offer_bonus_points (offer);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketing", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
