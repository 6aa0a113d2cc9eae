"""Staff users, their API bearer tokens, and integration API keys."""

from piccolo.columns import UUID, Array, Boolean, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class Staff(Table, tablename="staff"):
    id = UUID(primary_key=True)
    username = Varchar(length=64, unique=True)
    display_name = Varchar(length=128)
    role = Varchar(length=32, index=True)
    department = Varchar(length=64, null=True, default=None, index=True)
    level = Varchar(length=16, default="regular")  # reps: junior | regular | senior
    password_hash = Text()
    active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())
    deactivated_at = Timestamptz(null=True, default=None)


class StaffToken(Table, tablename="staff_tokens"):
    """A bearer token for API use; only its SHA-256 is stored."""

    id = UUID(primary_key=True)
    staff = ForeignKey(references=Staff, index=True)
    token_hash = Varchar(length=64, unique=True)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)


class ApiKey(Table, tablename="api_keys"):
    """An integration key (POS, shop): scoped, revocable, stored hashed."""

    id = UUID(primary_key=True)
    name = Varchar(length=100)
    prefix = Varchar(length=16)
    key_hash = Varchar(length=64, unique=True)
    scopes = Array(base_column=Varchar(length=64))
    created_by = ForeignKey(references=Staff, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    revoked_at = Timestamptz(null=True, default=None)
    last_used_at = Timestamptz(null=True, default=None)
