"""Acting on the monthly movement report: the month's declining and at-risk valuable
members (marketing's report) become a segment marketing can send to, and follow-up tasks
for their reps (the reps domain). Each runs once per month and member: a second run adds
nobody twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import msgspec

from loyalty.auth import Principal
from loyalty.errors import InvalidInput, PermissionDenied
from loyalty.infrastructure.clock import local_today
from loyalty.infrastructure.schemas import Input
from loyalty.marketing import reports, segments
from loyalty.marketing.schemas import Segment
from loyalty.reps import follow_ups

FOLLOW_UP_RULE = "valuable_declining"


class FollowUpActionCreate(Input):
    days: Annotated[int, msgspec.Meta(ge=1, le=60)] = 7  # call within this many days


class SegmentAction(msgspec.Struct):
    segment: Segment
    members: int  # declining and at-risk valuable members this month
    added: int  # of them, new to the segment by this run


class FollowUpAction(msgspec.Struct):
    month: str
    members: int
    created: int  # tasks made by this run (none twice for a member in a month)


async def declining_segment(month: str, principal: Principal) -> SegmentAction:
    """The segment "Declining valuable members YYYY-MM", made once for the month."""
    if not principal.can("segments:manage"):
        raise PermissionDenied("this needs the segments:manage permission")
    members = await reports.declining_valuable(month)
    segment, added = await segments.list_segment(
        f"movement:{month}",
        f"Declining valuable members {month}",
        "Valuable members (above the lowest tier) who spent less or moved down a tier in"
        f" {month}, or bought nothing for the at-risk window: from the movement report.",
        members,
        principal,
    )
    return SegmentAction(segment=segment, members=len(members), added=added)


async def declining_follow_ups(month: str, days: int, principal: Principal) -> FollowUpAction:
    """For each declining or at-risk valuable member, their rep gets a task due in `days`
    ("valuable member declining: call"), once for the month."""
    if not principal.can("marketing:report"):
        raise PermissionDenied("this needs the marketing:report permission")
    if not 1 <= days <= 60:
        raise InvalidInput("must be between 1 and 60", field="days")
    members = await reports.declining_valuable(month)
    created = await follow_ups.add_keyed_tasks(
        members, FOLLOW_UP_RULE, f"movement:{month}", local_today() + timedelta(days=days)
    )
    return FollowUpAction(month=month, members=len(members), created=created)
