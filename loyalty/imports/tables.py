"""Import bookkeeping: each import with its progress and counts, the identities of rows
already merged (re-runs and resumed runs skip them), and per-import errors and conflicts."""

from piccolo.columns import UUID, BigInt, ForeignKey, Integer, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class Import(Table, tablename="imports"):
    id = UUID(primary_key=True)
    kind = Varchar(length=16, default="members")  # members | purchases
    file_name = Varchar(length=255)
    file_path = Text(default="")  # where the uploaded file waits for the worker
    file_sha256 = Varchar(length=64, index=True)
    status = Varchar(length=16, default="queued")  # queued | running | done | failed
    bytes_total = BigInt(default=0)
    bytes_done = BigInt(default=0)
    rows_read = Integer(default=0)  # data rows read so far (the header not counted)
    created = Integer(default=0)  # new members
    merged = Integer(default=0)  # rows folded into a member already in the database or file
    skipped = Integer(default=0)  # rows imported before (same row identity)
    errors = Integer(default=0)
    conflicts = Integer(default=0)
    points_entries = Integer(default=0)
    failure = Text(default="")
    created_by = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())
    started_at = Timestamptz(null=True, default=None)
    finished_at = Timestamptz(null=True, default=None)


class ImportedRow(Table, tablename="import_rows"):
    """A row identity that has been merged: `external_id`, else a hash of the normalised row."""

    row_key = Varchar(length=100, primary_key=True)
    import_id = ForeignKey(references=Import, index=True)
    row_no = Integer()
    member = UUID(null=True, default=None)
    at = Timestamptz(default=TimestamptzNow())


class RowError(Table, tablename="import_errors"):
    id = UUID(primary_key=True)
    import_id = ForeignKey(references=Import, index=True)
    row_no = Integer()
    column = Varchar(length=64)
    value = Text(default="")
    reason = Text()


class RowConflict(Table, tablename="import_conflicts"):
    """A duplicate offered a different non-empty value than the survivor kept."""

    id = UUID(primary_key=True)
    import_id = ForeignKey(references=Import, index=True)
    row_no = Integer()
    member = UUID(null=True, default=None)
    member_number = Varchar(length=16, default="")
    field = Varchar(length=64)
    kept = Text(default="")
    offered = Text(default="")
