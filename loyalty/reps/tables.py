"""Company-owned relationships: the contact log (every visit, call, message, complaint and
request, whoever handled it)."""

from piccolo.columns import UUID, ForeignKey, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from loyalty.members.tables import Member
from loyalty.staff.tables import Staff


class Contact(Table, tablename="contacts"):
    id = UUID(primary_key=True)
    member = ForeignKey(references=Member, index=True)
    staff = ForeignKey(references=Staff, null=True, default=None)  # who handled it, if anyone
    kind = Varchar(length=16)  # visit | call | message | complaint | request | note
    channel = Varchar(length=16)  # portal | phone | visit | email | sms | wechat
    direction = Varchar(length=8)  # inbound (from the member) | outbound
    subject = Varchar(length=200, default="")
    body = Text(default="")
    status = Varchar(length=16, default="open")  # open | closed (requests and complaints)
    occurred_at = Timestamptz(default=TimestamptzNow())
    logged_at = Timestamptz(default=TimestamptzNow())
    logged_by = Varchar(length=120)
