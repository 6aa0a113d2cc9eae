"""The marketing workspace's segment pages: saved segments with the value-group pyramid, and
the builder with every filter the segments API takes. The member count (with its breakdown
by tier and by reachable channel) follows the form as it changes: a little script posts the
form to the count fragment. Counts only: no page here ever shows who the members are."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template
from markupsafe import Markup

from loyalty.console.common import (
    back,
    chosen_id,
    convert,
    form,
    form_page,
    page,
    problem,
    staff,
    words,
)
from loyalty.errors import DomainError
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import LABELS, N_, label, staff_label
from loyalty.marketing import schemas, segment_facts, segments
from loyalty.tiers import service as tiers

PERMISSION = "segments:manage"

SAVED = {
    "created": N_("The segment is saved."),
    "changed": N_("The segment is changed."),
}

# The builder's fields by kind: ticked lists, comma-separated words, and numbers.
CHECKED = ("tiers", "birthday_months", "consents", "value_groups", "lifecycle_stages")
WORDS = ("regions", "tags", "departments")
NUMBERS = (
    "window_days",
    "spend_min",
    "spend_max",
    "purchases_min",
    "purchases_max",
    "days_since_purchase_min",
    "days_since_purchase_max",
    "points_min",
    "points_max",
    "referrals_min",
    "tier_joined_within_days",
)
CHANNELS = ("email", "sms", "phone", "wechat", "post", "portal")
STAGES = (
    "prospect_with_intent",
    "prospect_without_intent",
    "new_customer",
    "regular",
    "lapsing",
    "lost",
)


def _listed(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def filter_from(values: dict[str, Any]) -> schemas.SegmentFilter:
    """The builder's form as a segment filter (the API's validation), or 422 naming the
    form field."""
    data: dict[str, Any] = {}
    for name in CHECKED:
        if picked := _listed(values.get(name)):
            data[name] = picked
    for name in WORDS:
        if found := words(str(values.get(name, ""))):
            data[name] = found
    for name in NUMBERS:
        text = str(values.get(name, "")).strip()
        if text:
            data[name] = text
    unassigned = values.get("unassigned", "")
    if unassigned in ("yes", "no"):
        data["unassigned"] = unassigned == "yes"
    if values.get("member_list"):
        data["member_list"] = str(chosen_id(values["member_list"], "member_list"))
    return convert(data, schemas.SegmentFilter)


def form_values(f: schemas.SegmentFilter) -> dict[str, Any]:
    """A saved filter as the builder's form values."""
    values: dict[str, Any] = {}
    for name, value in msgspec.to_builtins(f).items():
        if name in WORDS:
            values[name] = ", ".join(value)
        elif name == "unassigned":
            values[name] = "yes" if value else "no"
        elif isinstance(value, list):
            values[name] = [str(v) for v in value]
        else:
            values[name] = str(value)
    return values


def _field(exc: DomainError) -> DomainError:
    """The service names filter fields as the API body does (`filter.tiers[0]`); the form
    names them `tiers`."""
    if exc.field:
        exc.field = exc.field.removeprefix("filter.").split("[", 1)[0]
    return exc


async def _count(f: schemas.SegmentFilter) -> schemas.SegmentCount:
    return await segment_facts.count(f, breakdown=True)


class SegmentPages(Controller):
    path = "/"

    @get(
        "/segments",
        opt=covers(
            "GET /api/v1/segments",
            "GET /api/v1/segments/value-groups",
            "GET /api/v1/segments/value-groups.svg",
        ),
    )
    async def segment_list(self, request: Request) -> Template:
        staff(request, PERMISSION)
        groups = await segments.value_groups()
        return form_page(
            request,
            "segments_list.html",
            SAVED,
            segments=await segments.list_segments(),
            groups=groups,
            # Numbers and the catalog's group names (escaped by pyramid_svg) only.
            pyramid=Markup(
                segments.pyramid_svg(
                    groups, {g: staff_label(f"group_{g}") for g in segments.GROUPS}
                )
            ),
        )

    @get("/segments/new")
    async def new_segment(
        self, request: Request, copy: Annotated[UUID | None, QueryParameter()] = None
    ) -> Template:
        """The builder, empty or holding a copy of a saved segment (saved as a new one)."""
        staff(request, PERMISSION)
        values: dict[str, Any] = {}
        if copy is not None:
            original = await segments.get(copy)
            values = form_values(original.filter)
            values["name"] = f"{original.name} (copy)"[:200]
            values["description"] = original.description
        return await builder(request, values, None)

    @post("/segments", opt=covers("POST /api/v1/segments"))
    async def create_segment(self, request: Request) -> Template | Redirect:
        principal = staff(request, PERMISSION)
        values = await form(request)
        try:
            key = chosen_id(values.get("key"), "name")
            data = convert(
                {
                    "name": str(values.get("name", "")).strip(),
                    "description": str(values.get("description", "")),
                    "filter": msgspec.to_builtins(filter_from(values)),
                },
                schemas.SegmentCreate,
            )
            created = await segments.create(data, principal, segment_id=key)
        except DomainError as exc:
            return await builder(request, values, None, _field(exc))
        return back(f"/console/segments/{created.id}?saved=created")

    @get("/segments/{segment_id:uuid}", opt=covers("GET /api/v1/segments/{segment_id:uuid}"))
    async def edit_segment(self, request: Request, segment_id: FromPath[UUID]) -> Template:
        staff(request, PERMISSION)
        found = await segments.get(segment_id)
        values = form_values(found.filter)
        values.update(name=found.name, description=found.description)
        return await builder(request, values, found)

    @post("/segments/{segment_id:uuid}", opt=covers("PUT /api/v1/segments/{segment_id:uuid}"))
    async def change_segment(
        self, request: Request, segment_id: FromPath[UUID]
    ) -> Template | Redirect:
        principal = staff(request, PERMISSION)
        found = await segments.get(segment_id)
        values = await form(request)
        try:
            data = convert(
                {
                    "name": str(values.get("name", "")).strip(),
                    "description": str(values.get("description", "")),
                    "filter": msgspec.to_builtins(filter_from(values)),
                },
                schemas.SegmentUpdate,
            )
            await segments.update(segment_id, data, principal)
        except DomainError as exc:
            return await builder(request, values, found, _field(exc))
        return back(f"/console/segments/{segment_id}?saved=changed")

    @post("/segments/count", opt=covers("POST /api/v1/segments/count"))
    async def count_fragment(self, request: Request) -> Template:
        """The builder's live count: a fragment of HTML the page's script puts in place."""
        staff(request, PERMISSION)
        values = await form(request)
        if request.headers.get("x-requested-with") != "fetch":
            # The Count button without JavaScript: the whole builder, counted.
            segment = None
            if values.get("segment_id"):
                segment = await segments.get(chosen_id(values["segment_id"], "segment_id"))
            return await builder(request, values, segment)
        try:
            counted = await _count(filter_from(values))
        except DomainError as exc:
            exc = _field(exc)
            return page(
                request,
                "segments_count.html",
                status=exc.status_code,
                counted=None,
                error=problem(exc),
                tier_names=await _ladder_names(),
            )
        return page(
            request,
            "segments_count.html",
            counted=counted,
            error=None,
            tier_names=await _ladder_names(),
        )


def _tier_names(ladder: list[Any]) -> dict[str, str]:
    """Tier names in the reader's language: the catalog's word for the standard tiers."""
    return {t.code: label(t.code) if t.code in LABELS else t.name for t in ladder}


async def _ladder_names() -> dict[str, str]:
    return _tier_names((await tiers.ladder()).tiers)


async def builder(
    request: Request,
    values: dict[str, Any],
    segment: schemas.Segment | None,
    error: DomainError | None = None,
) -> Template:
    """The builder page: the form (with what was typed after an error) and its count."""
    counted = None
    count_error = None
    try:
        counted = await _count(filter_from(values))
    except DomainError as exc:
        count_error = problem(_field(exc))
    ladder = (await tiers.ladder()).tiers
    return form_page(
        request,
        "segments_builder.html",
        SAVED,
        error,
        segment=segment,
        values=values,
        key=values.get("key") or str(uuid4()),
        tier_names=_tier_names(ladder),
        options={
            "tiers": list(_tier_names(ladder).items()),
            "value_groups": [(g, staff_label(f"group_{g}")) for g in segments.GROUPS],
            "lifecycle_stages": [(s, staff_label(f"stage_{s}")) for s in STAGES],
            "birthday_months": [(m, str(m)) for m in range(1, 13)],
            "consents": [(c, staff_label(f"channel_{c}")) for c in CHANNELS],
        },
        counted=counted,
        count_error=count_error,
        checked=checked,
    )


def checked(values: dict[str, Any], name: str, option: Any) -> bool:
    return str(option) in _listed(values.get(name))
