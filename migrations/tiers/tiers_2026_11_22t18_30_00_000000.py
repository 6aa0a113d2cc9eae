"""A member's qualifying value read with a fresh snapshot, for the purchase path: it locks
the member's account and reads the spend in one statement, and a VOLATILE function's query
sees what committed while the statement waited for that lock (the statement's own snapshot
would miss a concurrent purchase of the same member and lose its upgrade)."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T18:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "member_qualifying_value(): qualifying value with a fresh snapshot"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="tiers", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            CREATE OR REPLACE FUNCTION member_qualifying_value(
                for_member uuid, basis text, since timestamptz, until timestamptz
            ) RETURNS numeric LANGUAGE plpgsql VOLATILE AS $$
            BEGIN
                IF basis = 'points_earned' THEN
                    RETURN (SELECT coalesce(sum(q.points), 0)::numeric FROM points_ledger q
                            WHERE q.member = for_member AND q.occurred_at >= since
                              AND q.occurred_at <= until
                              AND q.kind IN ('purchase_earn', 'referral_earn', 'bonus',
                                             'reversal'));
                END IF;
                RETURN (SELECT coalesce(sum(q.total - q.returned_amount), 0) FROM purchases q
                        WHERE q.member = for_member AND q.occurred_at >= since
                          AND q.occurred_at <= until);
            END
            $$;
            """
        )

    manager.add_raw(run)
    return manager
