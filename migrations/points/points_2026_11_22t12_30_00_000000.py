"""Ledger invariants in the database, hot-path indexes, and the default earning rules."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T12:30:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "ledger invariants, indexes, default earning rules"

STATEMENTS = """
CREATE FUNCTION points_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'points_ledger is append-only: % is not allowed; post a correcting entry', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER points_ledger_append_only
    BEFORE UPDATE OR DELETE ON points_ledger
    FOR EACH ROW EXECUTE FUNCTION points_ledger_append_only();

CREATE FUNCTION points_total_follows_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    updated integer;
    expected integer;
BEGIN
    -- Once per statement: a batch of a thousand entries updates each account once.
    UPDATE points_accounts a SET total = a.total + n.points
    FROM (SELECT member, sum(points) AS points FROM new_entries GROUP BY member) n
    WHERE a.member = n.member;
    GET DIAGNOSTICS updated = ROW_COUNT;
    SELECT count(DISTINCT member) INTO expected FROM new_entries;
    IF updated <> expected THEN
        RAISE EXCEPTION 'ledger entries for a member without a points account'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER points_total_follows_ledger
    AFTER INSERT ON points_ledger
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION points_total_follows_ledger();

CREATE FUNCTION points_account_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    acct points_accounts%ROWTYPE;
BEGIN
    -- Deferred to commit: read the row as it is now, not as this (possibly earlier) event saw it.
    SELECT * INTO acct FROM points_accounts WHERE id = NEW.id;
    IF FOUND AND acct.available + acct.pending - acct.debt <> acct.total THEN
        RAISE EXCEPTION 'points account % out of balance: available % + pending % - debt % <> ledger total %',
            acct.member, acct.available, acct.pending, acct.debt, acct.total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER points_account_balanced
    AFTER INSERT OR UPDATE ON points_accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION points_account_balanced();

ALTER TABLE points_accounts
    ADD CONSTRAINT points_accounts_buckets_non_negative
    CHECK (available >= 0 AND pending >= 0 AND debt >= 0);
ALTER TABLE points_ledger ADD CONSTRAINT points_ledger_non_zero CHECK (points <> 0);
ALTER TABLE points_lots
    ADD CONSTRAINT points_lots_remaining_in_range CHECK (remaining >= 0 AND remaining <= points);
ALTER TABLE purchase_lines ADD CONSTRAINT purchase_lines_returns_in_range
    CHECK (quantity > 0 AND returned_quantity >= 0 AND returned_quantity <= quantity);

CREATE INDEX points_ledger_statement ON points_ledger (member, created_at DESC, id DESC);
CREATE INDEX points_lots_to_release ON points_lots (available_at) WHERE NOT released AND remaining > 0;
CREATE INDEX points_lots_to_expire ON points_lots (expires_at) WHERE remaining > 0;
CREATE INDEX points_lots_member_open ON points_lots (member, expires_at) WHERE remaining > 0;
CREATE INDEX purchases_member_time ON purchases (member, occurred_at DESC);

INSERT INTO earning_rules (id, points_per_unit, category_multipliers, pending_days, expiry_months, updated_by)
VALUES (1, 1, '{}', 14, 24, 'migration');
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="points", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
