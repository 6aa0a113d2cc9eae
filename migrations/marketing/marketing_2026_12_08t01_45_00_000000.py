"""Indexes for the segment conditions that select few members: a tier, a region, a birthday
month, tags and consent per channel (segments.where_clause uses these exact expressions)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:45:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "segment condition indexes"

STATEMENTS = """
CREATE INDEX IF NOT EXISTS member_tiers_tier ON member_tiers (tier, member);
CREATE INDEX IF NOT EXISTS members_region ON members ((address->>'region'));
CREATE INDEX IF NOT EXISTS members_birthday_month ON members ((extract(month FROM birthday)::int));
CREATE INDEX IF NOT EXISTS members_tags ON members USING gin (tags);
CREATE INDEX IF NOT EXISTS members_consents ON members
    USING gin ((contact_preferences->'consents') jsonb_path_ops);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketing", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
