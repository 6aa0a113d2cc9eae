"""Default referral settings, a referral code for every existing member, constraints."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T15:34:30:000000"
VERSION = "1.38.0"
DESCRIPTION = "referral settings, codes for existing members, constraints"

STATEMENTS = """
INSERT INTO referral_settings (id, referrer_points, referred_points, min_purchase, monthly_cap,
    updated_at, updated_by)
VALUES (1, 500, 200, 100, 10, now(), 'migration');

-- The same alphabet as loyalty.referrals.service.ALPHABET: no 0/O, 1/I/L, no vowels U.
CREATE FUNCTION new_referral_code() RETURNS text LANGUAGE sql VOLATILE AS $$
    SELECT string_agg(substr('23456789ABCDEFGHJKMNPQRSTVWXYZ', 1 + floor(random() * 30)::int, 1), '')
    FROM generate_series(1, 8)
$$;

INSERT INTO referral_codes (member, code, created_at)
SELECT id, new_referral_code(), now() FROM members
ON CONFLICT DO NOTHING;

ALTER TABLE referral_settings ADD CONSTRAINT referral_settings_sane CHECK (
    referrer_points >= 0 AND referred_points >= 0 AND min_purchase >= 0 AND monthly_cap >= 0);
ALTER TABLE referrals ADD CONSTRAINT referrals_not_self CHECK (referrer <> referred);
ALTER TABLE referrals ADD CONSTRAINT referrals_status CHECK (
    status IN ('pending', 'held', 'rewarded', 'rejected', 'reversed'));
CREATE INDEX referrals_referrer_month ON referrals (referrer, created_at);
CREATE INDEX referrals_waiting ON referrals (referred) WHERE qualified_at IS NULL
    AND status IN ('pending', 'held');
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="referrals", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
