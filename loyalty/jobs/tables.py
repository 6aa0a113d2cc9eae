"""The record of background job runs: one row per run, written by `loyalty.jobs.service`."""

from piccolo.columns import JSONB, UUID, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table


class JobRun(Table, tablename="job_runs"):
    id = UUID(primary_key=True)
    job = Varchar(length=64)
    job_id = Varchar(length=200, null=True, default=None)  # arq's job id: who started it
    started_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)
    outcome = Varchar(length=16, default="running")  # running | ok | failed | retry
    result = JSONB(null=True, default=None)  # the counts the job returned
    error = Text(default="")
