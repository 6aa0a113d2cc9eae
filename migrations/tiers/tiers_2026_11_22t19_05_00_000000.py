"""member_qualifying_value() in SQL rather than PL/pgSQL: PL/pgSQL keeps a generic plan for
the life of the connection, and one made while `purchases` was still small (a sequential
scan) went on scanning the whole table on every call; an SQL function is planned again for
each statement that calls it. Still VOLATILE, so it still reads with a fresh snapshot."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T19:05:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "member_qualifying_value(): SQL, planned per statement"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="tiers", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            DROP FUNCTION IF EXISTS member_qualifying_value(uuid, text, timestamptz, timestamptz);
            CREATE FUNCTION member_qualifying_value(
                for_member uuid, basis text, since timestamptz, until timestamptz
            ) RETURNS numeric LANGUAGE sql VOLATILE AS $$
                SELECT CASE WHEN basis = 'points_earned' THEN
                    (SELECT coalesce(sum(q.points), 0)::numeric FROM points_ledger q
                     WHERE q.member = for_member AND q.occurred_at >= since
                       AND q.occurred_at <= until
                       AND q.kind IN ('purchase_earn', 'referral_earn', 'bonus', 'reversal'))
                ELSE
                    (SELECT coalesce(sum(q.total - q.returned_amount), 0) FROM purchases q
                     WHERE q.member = for_member AND q.occurred_at >= since
                       AND q.occurred_at <= until)
                END
            $$;
            """
        )

    manager.add_raw(run)
    return manager
