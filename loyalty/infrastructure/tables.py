"""Columns that domain tables share."""

from piccolo.columns import Integer, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow


class SettingsRow:
    """A domain's settings table: one row (id 1), and who changed it last and when. Mixed
    into the Table class, before Table: `class X(SettingsRow, Table, tablename=...)`."""

    id = Integer(primary_key=True)
    updated_at = Timestamptz(default=TimestamptzNow())
    updated_by = Varchar(length=120, default="system")
