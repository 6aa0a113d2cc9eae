"""The default ladder and settings, a tier for every existing member, and indexes."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T13:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "default tier ladder, settings, member tiers, indexes"

STATEMENTS = """
INSERT INTO tier_definitions (code, name, rank, threshold, earn_multiplier, enabled,
    contact_cadence_days, response_time_hours, named_service_team, executive_sponsor_role,
    birthday_gift, event_invitations, benefits, updated_at, updated_by)
VALUES
    ('normal', 'Normal', 0, 0, 1.000, true, 90, 48, false, NULL, '', false,
     'Points on every purchase; self-service portal', now(), 'migration'),
    ('silver', 'Silver', 1, 5000, 1.100, true, 60, 24, false, NULL, 'Birthday voucher', false,
     '10% more points; priority service line', now(), 'migration'),
    ('gold', 'Gold', 2, 20000, 1.250, true, 30, 8, true, 'Sales director', 'Birthday gift box',
     true, '25% more points; named service team; event invitations', now(), 'migration'),
    ('platinum', 'Platinum', 3, 50000, 1.500, false, 14, 4, true, 'Sales director',
     'Birthday gift box', true, '50% more points; named service team; private events',
     now(), 'migration'),
    ('diamond', 'Diamond', 4, 100000, 2.000, false, 7, 2, true, 'General manager',
     'Personal birthday gift', true, 'Double points; executive sponsor; private events',
     now(), 'migration');

INSERT INTO tier_settings (id, basis, window_months, grace_days, updated_at, updated_by)
VALUES (1, 'net_spend', 12, 30, now(), 'migration');

INSERT INTO member_tiers (id, member, tier, since)
SELECT gen_random_uuid(), id, 'normal', registered_at FROM members;

CREATE INDEX member_tiers_tier ON member_tiers (tier);
CREATE INDEX tier_changes_member_time ON tier_changes (member, at DESC);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="tiers", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
