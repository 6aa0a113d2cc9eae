"""Defaults for rep levels by tier, refusal retries and archive completeness."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:31:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "rep level and completeness defaults"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="reps", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            UPDATE rep_settings SET
                tier_min_level = '{"gold": "senior", "platinum": "senior", "diamond": "senior"}',
                refusal_retry_days = 14,
                completeness_fields = ARRAY['name', 'phone', 'birthday', 'address', 'household',
                    'occupation', 'preferences', 'preferred_channel', 'source',
                    'relationship_strength'],
                completeness_days = 61;
            """
        )

    manager.add_raw(run)
    return manager
