"""Marketing: saved segments, offers with their audience snapshots and deliveries, voucher
pools for offers, and the bonus points offers paid through purchases."""

from decimal import Decimal

from piccolo.columns import (
    JSONB,
    UUID,
    Array,
    BigInt,
    Boolean,
    ForeignKey,
    Integer,
    Numeric,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from loyalty.infrastructure.tables import SettingsRow
from loyalty.rewards.tables import Reward


class MarketingSettings(SettingsRow, Table, tablename="marketing_settings"):
    """The frequency cap, retries and the churn windows of the reports."""

    frequency_cap = Integer(default=2)  # marketing messages (email, SMS) per member...
    cap_days = Integer(default=7)  # ...in this many days
    max_attempts = Integer(default=4)  # per delivery, then it stays failed
    retry_seconds = Integer(default=300)  # first retry after this, doubling each time
    churn_days = Integer(default=90)  # no purchase for this long: lost
    at_risk_days = Integer(default=60)  # no purchase for this long: at risk (win-back)
    falling_ratio = Numeric(digits=(4, 3), default=Decimal("0.5"))


class Segment(Table, tablename="segments"):
    id = UUID(primary_key=True)
    name = Varchar(length=200)
    description = Text(default="")
    filter = JSONB(default="{}")
    created_by = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_by = Varchar(length=120)
    updated_at = Timestamptz(default=TimestamptzNow())
    # Set on segments the platform makes (e.g. "movement:2026-12"): made once per key.
    key = Varchar(length=100, null=True, default=None, unique=True)


class SegmentMember(Table, tablename="segment_members"):
    """The fixed list of a segment whose filter names it (`member_list`): each member once."""

    segment = UUID()
    member = UUID()
    added_at = Timestamptz(default=TimestamptzNow())


class Offer(Table, tablename="offers"):
    id = UUID(primary_key=True)
    title_en = Varchar(length=200)
    title_zh = Varchar(length=200, default="")
    body_en = Text()
    body_zh = Text(default="")
    valid_from = Timestamptz()
    valid_until = Timestamptz()
    target_tiers = Array(base_column=Varchar(length=32), default=list)  # empty: every tier
    segment = ForeignKey(references=Segment, null=True, default=None)
    benefit = Varchar(length=16, default="none")  # none | voucher | bonus_points | reward_price
    bonus_multiplier = Numeric(digits=(6, 3), null=True, default=None)
    reward = ForeignKey(references=Reward, null=True, default=None)
    reward_points_cost = BigInt(null=True, default=None)
    auto_kind = Varchar(length=16, null=True, default=None)  # birthday | welcome | winback
    template = UUID(null=True, default=None)  # an automatic offer's monthly instance: its template
    period = Varchar(length=7, null=True, default=None)  # YYYY-MM of an instance
    # draft | submitted (awaiting approval) | approved | sending | sent | cancelled (templates
    # stay approved); a reviewer sending a submitted offer back makes it a draft again
    status = Varchar(length=16, default="draft")
    audience_filter = JSONB(null=True, default=None)  # what the snapshot selected
    audience_size = Integer(null=True, default=None)
    snapshot_at = Timestamptz(null=True, default=None)
    cursor = UUID(null=True, default=None)  # the last member delivered, in member order
    created_by = Varchar(length=120)
    created_at = Timestamptz(default=TimestamptzNow())
    updated_by = Varchar(length=120)
    updated_at = Timestamptz(default=TimestamptzNow())
    submitted_by = Varchar(length=120, null=True, default=None)
    submitted_at = Timestamptz(null=True, default=None)
    review_comment = Text(null=True, default=None)  # why it was sent back (the last time)
    reviewed_by = Varchar(length=120, null=True, default=None)
    reviewed_at = Timestamptz(null=True, default=None)
    approved_by = Varchar(length=120, null=True, default=None)
    approved_at = Timestamptz(null=True, default=None)
    sent_at = Timestamptz(null=True, default=None)


class OfferAudience(Table, tablename="offer_audience"):
    """The members an offer goes to, snapshotted when it is sent. (The migration replaces the
    id with a primary key on (offer, member).)"""

    id = UUID(primary_key=True)
    offer = UUID()
    member = UUID()


class OfferDelivery(Table, tablename="offer_deliveries"):
    """One per (offer, member), unique: whatever reruns, a member gets an offer once."""

    id = UUID(primary_key=True)
    offer = UUID()
    member = UUID()
    channel = Varchar(length=16)  # email | sms | portal (inbox only)
    address = Varchar(length=254, null=True, default=None)
    # sending (claimed, in flight) | sent | failed | capped (frequency cap: inbox only)
    status = Varchar(length=16)
    attempts = Integer(default=0)
    error = Text(null=True, default=None)
    next_attempt_at = Timestamptz(null=True, default=None)
    voucher_code = Varchar(length=64, null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)


class OfferVoucher(Table, tablename="offer_vouchers"):
    """Codes imported for a voucher offer; each delivered member takes one."""

    id = UUID(primary_key=True)
    offer = UUID()
    code = Varchar(length=64)
    member = UUID(null=True, default=None)
    used_at = Timestamptz(null=True, default=None)
    imported_at = Timestamptz(default=TimestamptzNow())


class OfferBonus(Table, tablename="offer_bonus_points"):
    """Extra points a bonus offer added to a purchase (already inside its ledger entry)."""

    id = UUID(primary_key=True)
    offer = UUID()
    member = UUID()
    purchase = Varchar(length=100)  # external id
    points = BigInt()
    created_at = Timestamptz(default=TimestamptzNow())


class ExpiryWarningSettings(SettingsRow, Table, tablename="expiry_warning_settings"):
    """Points expiry warnings: on or off, how long before, and the text in both languages.
    No row: the defaults in `loyalty.marketing.expiry` (the first save writes it)."""

    enabled = Boolean(default=True)
    days_before = Integer(default=30)
    title_en = Varchar(length=200)
    title_zh = Varchar(length=200)
    body_en = Text()
    body_zh = Text()


class ExpiryWarning(Table, tablename="expiry_warnings"):
    """One per (member, expiry month), unique: whatever reruns, a member is told once."""

    id = UUID(primary_key=True)
    member = UUID()
    month = Varchar(length=7)  # YYYY-MM the points expire in
    points = BigInt()
    first_at = Timestamptz()
    last_at = Timestamptz()
    channel = Varchar(length=16)  # email | sms | portal (inbox only)
    address = Varchar(length=254, null=True, default=None)
    language = Varchar(length=8)
    status = Varchar(length=16)  # sending | sent | failed
    attempts = Integer(default=0)  # sends tried; a failed one is tried again by the next runs
    error = Text(null=True, default=None)
    run = UUID(null=True, default=None)
    created_at = Timestamptz(default=TimestamptzNow())
    sent_at = Timestamptz(null=True, default=None)


class ExpiryWarningRun(Table, tablename="expiry_warning_runs"):
    """A run of the daily job: what it found and sent (the console lists the last runs)."""

    id = UUID(primary_key=True)
    started_at = Timestamptz(default=TimestamptzNow())
    finished_at = Timestamptz(null=True, default=None)
    enabled = Boolean(default=True)
    warned = Integer(default=0)
    emails = Integer(default=0)
    texts = Integer(default=0)
    failed = Integer(default=0)


class SegmentFact(Table, tablename="segment_facts"):
    """What the segment builder's counts read: one narrow row per active member, rebuilt
    set-based by `segment_facts.rebuild` (its only writer) every few minutes. Counts only;
    the audience snapshot at send time reads the live tables."""

    member = UUID(primary_key=True)
    tier = Varchar(length=32, null=True, default=None)
    tier_since = Timestamptz(null=True, default=None)
    region = Text(null=True, default=None)
    birthday_month = Integer(null=True, default=None)
    tags = Array(base_column=Varchar(length=50), null=True, default=None)
    consents = Array(base_column=Text(), default=list)  # channels with consent granted
    email = Boolean(null=True, default=None)  # reachable (segments.REACHABLE; null counts nowhere)
    sms = Boolean(null=True, default=None)
    rep = UUID(null=True, default=None)
    department = Text(null=True, default=None)
    points = BigInt(null=True, default=None)  # null: no points account
    referrals = Integer(default=0)
    spend = Numeric(default=Decimal(0))  # in the build's window
    purchases = Integer(default=0)  # in the build's window
    last_purchase = Timestamptz(null=True, default=None)  # ever
    value_group = Text(default="at_risk")
    stage = Text(default="")


class SegmentFactsBuild(Table, tablename="segment_facts_builds"):
    """The one row saying when the facts were built and over which purchase window."""

    id = Integer(primary_key=True)
    built_at = Timestamptz()
    window_days = Integer()
    members = Integer()
    took_ms = Integer()
