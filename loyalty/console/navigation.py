"""The console's navigation: sections grouped by the work they serve, each shown only to
staff holding its permission. The top bar holds Home, Notices and one tab per group the
user may use; the second bar holds the links of the group the current page belongs to.
A user with one group sees its links in the top bar, so a rep's phone shows one row.

Each area of the console adds its pages to its own group here, nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from loyalty.auth import Principal
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.i18n import gettext as _


@dataclass(frozen=True)
class Link:
    href: str
    label: str  # marked with N_, translated when shown
    permission: str | None = None  # None: every staff user


@dataclass(frozen=True)
class Group:
    key: str
    label: str
    links: tuple[Link, ...]


GROUPS: tuple[Group, ...] = (
    Group(
        "front",
        N_("Front line"),
        (
            Link("/console/tasks", N_("My tasks"), "members:read"),
            Link("/console/members", N_("My members"), "members:read"),
            Link("/console/register", N_("Register a customer"), "members:write"),
            Link("/console/search", N_("Find a member"), "members:read"),
            Link("/console/archives", N_("Incomplete archives"), "members:read"),
            Link("/console/my-swaps", N_("My swaps"), "members:read"),
        ),
    ),
    Group(
        "service",
        N_("Service desk"),
        (
            Link("/console/service", N_("Service desk"), "service:desk"),
            Link("/console/service/requests", N_("Requests"), "service:desk"),
        ),
    ),
    Group(
        "team",
        N_("Team"),
        (
            Link("/console/pool", N_("Pool"), "reps:assign"),
            Link("/console/handovers", N_("Handovers"), "reps:assign"),
            Link("/console/swaps", N_("Swaps"), "reps:assign"),
            Link("/console/reclaims", N_("Reclaims"), "reps:assign"),
            Link("/console/team", N_("Team activity"), "reps:assign"),
            Link("/console/scorecards", N_("Scorecards"), "reps:assign"),
            Link("/console/rotations", N_("Rotation"), "reps:assign"),
            Link("/console/flags", N_("Reassignment flags"), "reps:assign"),
            Link("/console/team/reps", N_("Reps and sponsors"), "reps:assign"),
        ),
    ),
    Group(
        "marketing",
        N_("Marketing"),
        (
            Link("/console/segments", N_("Segments"), "segments:manage"),
            Link("/console/offers", N_("Offers"), "offers:manage"),
            Link("/console/automatic-offers", N_("Automatic offers"), "offers:manage"),
            Link("/console/expiry-warnings", N_("Expiry warnings"), "offers:manage"),
            Link("/console/movement", N_("Movement report"), "marketing:report"),
            Link("/console/marketing-settings", N_("Marketing settings"), "offers:manage"),
        ),
    ),
    Group(
        "admin",
        N_("Administration"),
        (
            Link("/console/staff", N_("Staff"), "staff:read"),
            Link("/console/departments", N_("Departments"), "staff:manage"),
            Link("/console/api-keys", N_("API keys"), "api_keys:manage"),
            Link("/console/tiers", N_("Tiers"), "tiers:manage"),
            Link("/console/earning", N_("Earning rules"), "rules:manage"),
            Link("/console/rep-settings", N_("Ownership rules"), "reps:configure"),
            Link("/console/rewards", N_("Rewards"), "rewards:manage"),
            Link("/console/redemptions", N_("Redemptions"), "redemptions:fulfil"),
            Link("/console/referrals", N_("Referrals"), "referrals:review"),
            Link("/console/referral-figures", N_("Referral figures"), "referrals:report"),
            Link("/console/referral-settings", N_("Referral settings"), "referrals:manage"),
            Link("/console/merge", N_("Merge duplicates"), "members:merge"),
            Link("/console/webhooks", N_("Webhooks"), "webhooks:manage"),
            Link("/console/privacy", N_("Closure requests"), "privacy:erase"),
            Link("/console/exports", N_("Exports"), "exports:read"),
            Link("/console/imports", N_("Imports"), "imports:run"),
            Link("/console/jobs", N_("Jobs"), "jobs:run"),
            Link("/console/audit", N_("Audit trail"), "audit:trail"),
        ),
    ),
)

ALWAYS = (Link("/console", N_("Home")), Link("/console/notices", N_("Notices")))


@dataclass(frozen=True)
class Shown:
    """One link as the template draws it."""

    href: str
    label: str
    current: str | None  # aria-current: "page" for the page's own link, "true" for its group
    count: int | None = None


@dataclass(frozen=True)
class Navigation:
    top: list[Shown]
    group_label: str | None  # names the second bar for screen readers
    second: list[Shown]


def _is_at(path: str, href: str) -> bool:
    if href == "/console":
        return path in ("/console", "/console/")
    return path == href or path.startswith(href + "/")


def _allowed(principal: Principal, link: Link) -> bool:
    return link.permission is None or principal.can(link.permission)


def navigation(principal: Principal, path: str, unread_notices: int = 0) -> Navigation:
    """What `principal` sees in the bars on the page at `path`."""
    groups = [
        (group, [link for link in group.links if _allowed(principal, link)]) for group in GROUPS
    ]
    groups = [(group, links) for group, links in groups if links]
    # The longest matching link decides the group (/console/members/… is "My members").
    best = max(
        (
            (len(link.href), group.key)
            for group, links in groups
            for link in links
            if _is_at(path, link.href)
        ),
        default=(0, None),
    )
    current_key = best[1] or (groups[0][0].key if groups else None)

    # Only the longest match is the page itself (/console/service/requests, not also
    # /console/service); /console and /console/notices are matched on their own.
    here = max(
        (len(link.href) for _group, links in groups for link in links if _is_at(path, link.href)),
        default=0,
    )

    def shown(link: Link) -> Shown:
        count = unread_notices if link.href == "/console/notices" else None
        at = _is_at(path, link.href) and (link in ALWAYS or len(link.href) == here)
        return Shown(link.href, _(link.label), "page" if at else None, count)

    top = [shown(link) for link in ALWAYS]
    if len(groups) == 1:
        return Navigation(top + [shown(link) for link in groups[0][1]], None, [])
    second: list[Shown] = []
    group_label = None
    for group, links in groups:
        is_current = group.key == current_key
        marked = "true" if is_current and best[1] is not None else None
        top.append(Shown(links[0].href, _(group.label), marked))
        if is_current:
            second = [shown(link) for link in links]
            group_label = _(group.label)
    return Navigation(top, group_label, second)
