"""The audit trail: append-only (a trigger refuses UPDATE and DELETE, as on the ledger)."""

from piccolo.columns import JSONB, UUID, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class AuditEntry(Table, tablename="audit_trail"):
    id = UUID(primary_key=True)
    at = Timestamptz(default=TimestamptzNow())
    actor_kind = Varchar(length=16)  # staff | api_key | system (member | portal: the portal)
    actor_id = UUID(null=True, default=None)
    actor_label = Varchar(length=150)
    action = Varchar(length=200)  # "tiers.update", or "POST /api/v1/…" for generic records
    subject_type = Varchar(length=50, default="")
    subject_id = Varchar(length=200, null=True, default=None)
    summary = Text(default="")
    before = JSONB(null=True, default=None)
    after = JSONB(null=True, default=None)
    request_id = Varchar(length=64, null=True, default=None)
