"""The audit trail is append-only in the database, as the ledger is; indexes for its filters."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-12-08T01:13:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "audit trail append-only, indexes"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="audit", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(
            """
            CREATE FUNCTION audit_trail_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_trail is append-only: % is not allowed', TG_OP
                    USING ERRCODE = 'restrict_violation';
            END $$;

            CREATE TRIGGER audit_trail_append_only
                BEFORE UPDATE OR DELETE ON audit_trail
                FOR EACH ROW EXECUTE FUNCTION audit_trail_append_only();

            CREATE INDEX audit_trail_newest ON audit_trail (at DESC, id DESC);
            CREATE INDEX audit_trail_action ON audit_trail (action text_pattern_ops, at DESC);
            CREATE INDEX audit_trail_actor ON audit_trail (actor_label, at DESC);
            CREATE INDEX audit_trail_subject ON audit_trail (subject_id, at DESC);
            """
        )

    manager.add_raw(run)
    return manager
