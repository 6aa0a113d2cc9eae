"""Segment facts: the narrow per-member table the segment builder's counts read."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T02:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "segment facts"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="marketing", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            CREATE TABLE segment_facts (
                member uuid PRIMARY KEY,
                tier varchar(32),
                tier_since timestamptz,
                region text,
                birthday_month integer,
                tags varchar(50)[],
                consents text[] NOT NULL DEFAULT '{}',
                email boolean,
                sms boolean,
                rep uuid,
                department text,
                points bigint,
                referrals integer NOT NULL DEFAULT 0,
                spend numeric NOT NULL DEFAULT 0,
                purchases integer NOT NULL DEFAULT 0,
                last_purchase timestamptz,
                value_group text NOT NULL DEFAULT 'at_risk',
                stage text NOT NULL DEFAULT ''
            );
            CREATE TABLE segment_facts_builds (
                id integer PRIMARY KEY,
                built_at timestamptz NOT NULL,
                window_days integer NOT NULL,
                members integer NOT NULL,
                took_ms integer NOT NULL
            );
            """
        )

    manager.add_raw(run)
    return manager
