"""Ownership rules' defaults, the current assignments as history, and the constraints that
keep two reps from ever serving one member."""

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2026-11-22T16:09:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "rep settings, assignment history backfill, ownership constraints"

STATEMENTS = """
INSERT INTO rep_settings (id, protection_days, inactive_months, no_deal_months,
    tier_no_deal_months, warning_days, new_rep_days, daily_pool_cap, handover_days,
    contact_deadline_hour, updated_at, updated_by)
VALUES (1, 30, 3, 6, '{"gold": 4, "platinum": 3, "diamond": 3}', 7, 30, 20, 7, 10, now(),
        'migration');

INSERT INTO assignments (id, member, rep, kind, reason, assigned_by, started_at)
SELECT gen_random_uuid(), id, assigned_rep, 'registration', 'assigned before history was kept',
       'migration', registered_at
FROM members WHERE assigned_rep IS NOT NULL;

-- Two reps never serve the same member.
CREATE UNIQUE INDEX assignments_one_open ON assignments (member) WHERE ended_at IS NULL;
CREATE INDEX assignments_rep_open ON assignments (rep, started_at) WHERE ended_at IS NULL;
CREATE UNIQUE INDEX handovers_one_open ON handovers (member) WHERE resolved_at IS NULL;
CREATE UNIQUE INDEX reclaims_once ON reclaims (member, rule, due_on);
CREATE UNIQUE INDEX follow_ups_one_open ON follow_ups (member, rule) WHERE closed_at IS NULL;
CREATE INDEX follow_ups_rep_due ON follow_ups (rep, due_on) WHERE closed_at IS NULL;
CREATE INDEX contacts_member_time ON contacts (member, occurred_at DESC);
CREATE INDEX contacts_staff_time ON contacts (staff, occurred_at DESC);
ALTER TABLE swap_requests ADD CONSTRAINT swap_requests_two_sides CHECK (
    member_a <> member_b AND rep_a <> rep_b);
"""


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="reps", description=DESCRIPTION)

    async def run():
        from loyalty.infrastructure.db import run_script

        await run_script(STATEMENTS)

    manager.add_raw(run)
    return manager
