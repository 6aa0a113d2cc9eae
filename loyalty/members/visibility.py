"""Who may see a member: the one definition, written once as a SQL condition on a members row.

- a member signed in to the portal sees themselves;
- integration keys, admins, general managers and customer service see every member;
- a manager sees the members of the department's reps, and the pool (unassigned members)
  except those waiting in another department's handover queue;
- a rep sees their own members and the members whose service team they are on;
- anyone else sees nobody.

Every path asks this module: single objects (`can_see`), Piccolo queries on `Member`
(`where`) and set-based SQL (`condition`) for exports, reports and the tier distribution. The
condition reads the staff, handover and service-team tables itself, so callers need no joins.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from piccolo.columns.combination import WhereRaw

from loyalty.auth import Principal
from loyalty.infrastructure import db

SEES_EVERY_MEMBER = frozenset({"admin", "general_manager", "service"})
EVERYONE = "true"
NOBODY = "false"


class _Arguments:
    """Collects query arguments and writes their placeholders: `$n` for asyncpg, `{}` for
    Piccolo's raw where-clauses."""

    def __init__(self, first: int, numbered: bool) -> None:
        self.values: list[Any] = []
        self.first = first
        self.numbered = numbered

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${self.first + len(self.values) - 1}" if self.numbered else "{}"


def _build(principal: Principal, m: str, arg: _Arguments) -> str:
    if principal.kind == "member":
        return f"{m}.id = {arg(principal.id)}"
    if principal.kind == "api_key" or principal.role in SEES_EVERY_MEMBER:
        return EVERYONE
    if principal.role == "manager":
        # The pool, but not another department's handover queue: that is its manager's.
        pool = (
            f"({m}.assigned_rep IS NULL AND NOT EXISTS (SELECT 1 FROM handovers h"
            f" WHERE h.member = {m}.id AND h.resolved_at IS NULL"
            f" AND h.department IS DISTINCT FROM {arg(principal.department)}))"
        )
        if not principal.department:  # a manager without a department has no reps
            return pool
        department = (
            f"{m}.assigned_rep IN (SELECT s.id FROM staff s"
            f" WHERE s.department = {arg(principal.department)})"
        )
        return f"({department} OR {pool})"
    if principal.role == "rep":
        own = f"{m}.assigned_rep = {arg(principal.id)}"
        # A service team serves its member alongside the rep, so its people see the member.
        team = (
            f"EXISTS (SELECT 1 FROM service_team_members t"
            f" WHERE t.member = {m}.id AND t.staff = {arg(principal.id)})"
        )
        return f"({own} OR {team})"
    return NOBODY


def condition(principal: Principal, member: str = "m", first: int = 1) -> tuple[str, list[Any]]:
    """The members (aliased `member`) that `principal` may see, as a SQL condition and its
    arguments, numbered from `$first`."""
    arguments = _Arguments(first, numbered=True)
    return _build(principal, member, arguments), arguments.values


def where(principal: Principal) -> WhereRaw | None:
    """The condition for a Piccolo query on `Member` (None: every member)."""
    arguments = _Arguments(1, numbered=False)
    sql = _build(principal, '"members"', arguments)
    return None if sql == EVERYONE else WhereRaw(sql, *arguments.values)


async def can_see(principal: Principal, member_id: UUID) -> bool:
    """Whether `principal` may see this member: the same condition, for one row."""
    sql, args = condition(principal, "m", first=2)
    if sql in (EVERYONE, NOBODY):
        return sql == EVERYONE
    async with db.connection() as conn:
        return await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM members m WHERE m.id = $1 AND {sql})", member_id, *args
        )
