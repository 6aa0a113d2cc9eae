"""Members: one company-owned archive per customer, and the record of every change to it."""

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    Date,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from loyalty.staff.tables import Staff


class Member(Table, tablename="members"):
    id = UUID(primary_key=True)
    number = Varchar(length=16, unique=True)
    kind = Varchar(length=16, default="person")  # person | organisation
    status = Varchar(length=16, default="active", index=True)  # active | merged
    name = Varchar(length=200, index=True)
    phone = Varchar(length=20, null=True, default=None, unique=True)  # E.164
    email = Varchar(length=254, null=True, default=None, unique=True)  # lower-cased
    gender = Varchar(length=16, null=True, default=None)
    birthday = Date(null=True, default=None)
    address = JSONB(null=True, default=None)
    household = JSONB(null=True, default=None)
    hobbies = Array(base_column=Varchar(length=100), default=list)
    consumption_preferences = Array(base_column=Varchar(length=200), default=list)
    notes = Text(default="")
    tags = Array(base_column=Varchar(length=50), default=list)
    organisation = JSONB(null=True, default=None)
    contact_preferences = JSONB(default="{}")
    occupation = Varchar(length=200, default="")  # or the company a person works for
    source = Varchar(length=100, default="")  # how the relationship began: fair, referral...
    relationship_strength = Integer(null=True, default=None)  # 1 (new) to 5 (close), by the rep
    registered_at = Timestamptz(default=TimestamptzNow())
    registration_channel = Varchar(length=16)  # staff | portal | integration
    registered_by = Varchar(length=120)  # who: "staff:ravi", "api_key:POS 12", "portal"
    registered_by_staff = ForeignKey(references=Staff, null=True, default=None)
    assigned_rep = ForeignKey(references=Staff, null=True, default=None, index=True)
    merged_into = UUID(null=True, default=None)
    updated_at = Timestamptz(default=TimestamptzNow())


class MemberChange(Table, tablename="member_changes"):
    """Who changed which archive fields when, with old and new values. Never edited."""

    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    action = Varchar(length=16)  # create | update | merge | merged_into
    actor = Varchar(length=120)
    actor_staff = ForeignKey(references=Staff, null=True, default=None)
    changes = JSONB(default="{}")
    at = Timestamptz(default=TimestamptzNow())


class MemberCredential(Table, tablename="member_credentials"):
    """A portal password the member chose (optional: sign-in by one-time code always works)."""

    member = ForeignKey(references=Member, primary_key=True)
    password_hash = Varchar(length=200)
    updated_at = Timestamptz(default=TimestamptzNow())


class ClosureRequest(Table, tablename="closure_requests"):
    """A member asked for their account to be closed; an admin decides (privacy erasure)."""

    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    channel = Varchar(length=16)  # portal | staff
    reason = Text(default="")
    status = Varchar(length=16, default="pending")  # pending | approved | rejected
    requested_at = Timestamptz(default=TimestamptzNow())
    decided_by = Varchar(length=120, null=True, default=None)
    decided_at = Timestamptz(null=True, default=None)
