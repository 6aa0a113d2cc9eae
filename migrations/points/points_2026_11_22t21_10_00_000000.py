"""The balance check at commit is queued only for account rows written out of balance."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T21:10:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "balance check queued only for rows written out of balance"

# A posting writes each account twice (its buckets, then the ledger trigger's total): the
# first write is out of balance until the second. A constraint trigger's WHEN is evaluated
# as each row is written, so the check is queued once, not twice, and still runs at commit
# on the row as it is then; a row written balanced last needs no check of its own.
STATEMENTS = """
DROP TRIGGER points_account_balanced ON points_accounts;
CREATE CONSTRAINT TRIGGER points_account_balanced
    AFTER INSERT OR UPDATE ON points_accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (NEW.available + NEW.pending - NEW.debt IS DISTINCT FROM NEW.total)
    EXECUTE FUNCTION points_account_balanced();
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="points", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
