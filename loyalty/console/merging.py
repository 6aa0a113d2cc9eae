"""Merging duplicates (admins): name the survivor and the duplicate by member number, see
both archives side by side with what moves and what the survivor's archive takes, then
confirm with a tick box. The preview writes nothing; the merge is the API's workflow
(`loyalty.workflows.merging`), and a second click of the same confirmation merges once."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from loyalty.console.common import back, chosen_id, convert, form, form_page, staff
from loyalty.errors import Conflict, DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.workflows import merging

SAVED = {"merged": N_("The duplicate is merged into the survivor.")}
Number = Annotated[str, QueryParameter(max_length=40)]
# The archive fields the preview lists, with their labels (translated when shown).
FIELDS = {
    "phone": N_("Phone"),
    "email": N_("Email"),
    "gender": N_("Gender"),
    "birthday": N_("Birthday"),
    "address": N_("Address"),
    "household": N_("Household"),
    "organisation": N_("Organisation"),
    "hobbies": N_("Hobbies"),
    "consumption_preferences": N_("Consumption preferences"),
    "tags": N_("Tags"),
    "notes": N_("Notes"),
}


def shown(value: Any) -> str:
    """An archive value as one line of text: lists and sections joined, blanks left out."""
    value = msgspec.to_builtins(value)
    if isinstance(value, dict):
        return ", ".join(shown(v) for v in value.values() if v not in (None, "", [], {}))
    if isinstance(value, list):
        return ", ".join(shown(v) for v in value)
    return "" if value is None else str(value)


def field_value(member: Any, field: str) -> str:
    return shown(getattr(member, field, None))


async def _by_number(number: str, field: str) -> UUID:
    if not number.strip():
        raise InvalidInput(N_("is required"), field=field)
    try:
        return await members.resolve_member_id(number=number.strip())
    except DomainError:
        raise InvalidInput(N_("no member with that number"), field=field) from None


class MergePages(Controller):
    path = "/merge"

    def _start(
        self, request: Request, error: DomainError | None = None, values: dict | None = None
    ) -> Template:
        staff(request, "members:merge")
        return form_page(
            request, "merge.html", SAVED, error, preview=None, form=values or {}, fields=FIELDS
        )

    async def _preview(
        self, request: Request, values: dict[str, Any], error: DomainError | None = None
    ) -> Template:
        principal = staff(request, "members:merge")
        survivor = await _by_number(str(values.get("survivor", "")), "survivor")
        duplicate = await _by_number(str(values.get("duplicate", "")), "duplicate")
        if survivor == duplicate:
            raise InvalidInput(N_("a member cannot be merged into itself"), field="duplicate")
        preview = await merging.preview_merge(survivor, duplicate, principal)
        return form_page(
            request,
            "merge.html",
            SAVED,
            error,
            preview=preview,
            form=values,
            fields=FIELDS,
            number=members.format_number,
            shown=shown,
            field_value=field_value,
        )

    @get("/")
    async def start(self, request: Request, survivor: Number = "") -> Template:
        return self._start(request, values={"survivor": survivor})

    @get("/preview")
    async def preview(
        self, request: Request, survivor: Number = "", duplicate: Number = ""
    ) -> Template:
        """Both archives side by side and what the merge would do; nothing is written."""
        values = {"survivor": survivor, "duplicate": duplicate}
        try:
            return await self._preview(request, values)
        except DomainError as exc:
            if exc.field in ("member_id", "duplicate_id"):
                exc.field = "survivor" if exc.field == "member_id" else "duplicate"
            return self._start(request, exc, values)

    @post("/", opt=covers("POST /api/v1/members/{member_id:uuid}/merge"))
    async def merge(self, request: Request) -> Template | Redirect:
        principal = staff(request, "members:merge")
        values = await form(request)
        survivor_id = chosen_id(values.get("survivor_id"), "survivor")
        duplicate_id = chosen_id(values.get("duplicate_id"), "duplicate")
        try:
            if values.get("confirm") != "yes":
                raise InvalidInput(N_("tick the box to confirm the merge"), field="confirm")
            data = convert(
                {"duplicate_id": duplicate_id, "reason": str(values.get("reason", "")).strip()},
                member_schemas.MergeCreate,
            )
            try:
                await merging.merge_members(survivor_id, data, principal)
            except Conflict:
                # A second click of the same confirmation: the first one merged them.
                duplicate = await members.fetch_member(duplicate_id)
                if duplicate.merged_into != survivor_id:
                    raise
        except DomainError as exc:
            return await self._preview(request, values, exc)
        return back(f"/console/merge?saved=merged&survivor={survivor_id}")
