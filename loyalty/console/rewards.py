"""The rewards catalog in the console: add and edit goods, vouchers (with a pool of codes
uploaded as CSV), event seats with stock and bonus services. Needs rewards:manage, as the
API does (admins and marketing). Redemptions are in `redemptions.py`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.console.common import back, convert, form, form_page, local_datetime, staff
from loyalty.console.once import form_key, new_key, once
from loyalty.errors import DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.infrastructure.i18n import gettext as _
from loyalty.rewards import catalog, vouchers
from loyalty.rewards import schemas as reward_schemas
from loyalty.settings import get_settings
from loyalty.tiers import service as tiers

SAVED = {
    "created": N_("The reward is added to the catalog."),
    "updated": N_("The reward is saved."),
    "vouchers": N_("The voucher codes are imported."),
}

KINDS = ("goods", "voucher", "event_seat", "bonus_service")
SOURCES = {"generated": N_("Made up at each redemption"), "pool": N_("From an uploaded pool")}

# What a voucher file's lines can have wrong, as the page says it (translated when shown).
LINE_PROBLEMS = {
    "blank": N_("Line %(line)s is blank."),
    "duplicate": N_("Line %(line)s repeats %(code)s from line %(first)s."),
    "invalid": N_("Line %(line)s: %(code)s is not a code (1 to 64 characters, no spaces)."),
    "columns": N_("Line %(line)s has more than one column: %(code)s"),
}

# The services' reasons, marked here so the catalog translates them on these pages.
_DETAILS = (
    N_("must be after valid_from"),
    N_("only voucher rewards take codes from a pool"),
    N_("only event seats have an event date"),
    N_("this reward does not take codes from a pool"),
    N_("no such reward"),
)


# --- reading the reward form ---------------------------------------------------------------


def _optional(value: Any) -> Any:
    text = str(value or "").strip()
    return text or None


def _chosen(values: dict[str, Any], name: str) -> list[str]:
    found = values.get(name, [])
    return [found] if isinstance(found, str) else list(found)


def reward_body(values: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The form's fields as the API's body: blanks are none (unlimited stock, no limit, no
    dates), date-times are in the business time zone."""
    body: dict[str, Any] = {
        "name": str(values.get("name", "")).strip(),
        "description": str(values.get("description", "")).strip(),
        "image_url": str(values.get("image_url", "")).strip(),
        "points_cost": str(values.get("points_cost", "")).strip(),
        "stock": _optional(values.get("stock")),
        "valid_from": local_datetime(str(values.get("valid_from", "")), "valid_from"),
        "valid_until": local_datetime(str(values.get("valid_until", "")), "valid_until"),
        "eligible_tiers": _chosen(values, "eligible_tiers"),
        "per_member_limit": _optional(values.get("per_member_limit")),
        "event_at": local_datetime(str(values.get("event_at", "")), "event_at"),
        "active": values.get("active") == "on",
    }
    if not body["points_cost"]:
        raise InvalidInput(N_("is required"), field="points_cost")
    if creating:
        body["kind"] = values.get("kind", "")
        body["voucher_source"] = values.get("voucher_source") or "generated"
    return body


def _local(value: datetime | None) -> str:
    """A date-time as a datetime-local input shows it (business time zone)."""
    return value.astimezone(get_settings().tz).strftime("%Y-%m-%dT%H:%M") if value else ""


def reward_form(reward: reward_schemas.Reward) -> dict[str, Any]:
    """A reward as its edit form's values."""
    return {
        "name": reward.name,
        "description": reward.description,
        "image_url": reward.image_url,
        "points_cost": str(reward.points_cost),
        "stock": "" if reward.stock is None else str(reward.stock),
        "valid_from": _local(reward.valid_from),
        "valid_until": _local(reward.valid_until),
        "eligible_tiers": list(reward.eligible_tiers),
        "per_member_limit": "" if reward.per_member_limit is None else str(reward.per_member_limit),
        "event_at": _local(reward.event_at),
        "active": "on" if reward.active else "",
    }


def _field_of(exc: DomainError) -> DomainError:
    # eligible_tiers[0] and the like: the error goes under the tier boxes.
    if exc.field and exc.field.startswith("eligible_tiers"):
        exc.field = "eligible_tiers"
    return exc


class RewardPages(Controller):
    path = "/rewards"

    async def _catalog_page(
        self,
        request: Request,
        error: DomainError | None = None,
        values: dict[str, Any] | None = None,
    ) -> Template:
        staff(request, "rewards:manage")
        # A new form is on offer by default; a failed post shows what was typed.
        values = dict(values) if values else {"active": "on"}
        if not values.get("form_key") or len(str(values["form_key"])) > 64:
            values["form_key"] = new_key()
        return form_page(
            request,
            "rewards_catalog.html",
            SAVED,
            error,
            rewards=await catalog.list_rewards(include_inactive=True),
            ladder=(await tiers.ladder()).tiers,
            kinds=KINDS,
            sources=SOURCES,
            # A failed post keeps its key (released), so the corrected form adds once.
            form=values,
        )

    @get("/", opt=covers("GET /api/v1/rewards"))
    async def catalog_page(self, request: Request) -> Template:
        """The whole catalog, switched-off rewards too, and the form to add one."""
        return await self._catalog_page(request)

    @post("/", opt=covers("POST /api/v1/rewards"))
    async def create(self, request: Request) -> Template | Redirect:
        principal = staff(request, "rewards:manage")
        values = await form(request)
        try:
            data = convert(reward_body(values, creating=True), reward_schemas.RewardCreate)
            reward_id = await once(
                request,
                principal,
                "reward",
                form_key(values.get("form_key")),
                UUID,
                lambda: _created_id(data, principal),
            )
        except DomainError as exc:
            if exc.field == "form_key":
                values["form_key"] = new_key()  # the corrected form can be sent
            return await self._catalog_page(request, _field_of(exc), values)
        return back(f"/console/rewards/{reward_id}?saved=created")

    async def _reward_page(
        self,
        request: Request,
        reward_id: UUID,
        error: DomainError | None = None,
        values: dict[str, Any] | None = None,
        problems: list[str] | None = None,
        imported: reward_schemas.VoucherImportResult | None = None,
    ) -> Template:
        staff(request, "rewards:manage")
        reward = await catalog.get_reward(reward_id)
        return form_page(
            request,
            "rewards_edit.html",
            SAVED,
            error,
            r=reward,
            ladder=(await tiers.ladder()).tiers,
            sources=SOURCES,
            form=values or reward_form(reward),
            problems=problems or [],
            imported=imported,
        )

    @get("/{reward_id:uuid}", opt=covers("GET /api/v1/rewards/{reward_id:uuid}"))
    async def reward(self, request: Request, reward_id: FromPath[UUID]) -> Template:
        return await self._reward_page(request, reward_id)

    @post("/{reward_id:uuid}", opt=covers("PATCH /api/v1/rewards/{reward_id:uuid}"))
    async def update(self, request: Request, reward_id: FromPath[UUID]) -> Template | Redirect:
        """Every field of the form is sent, so sending it twice saves the same."""
        principal = staff(request, "rewards:manage")
        values = await form(request)
        try:
            data = convert(reward_body(values, creating=False), reward_schemas.RewardUpdate)
            await catalog.update_reward(reward_id, data, principal)
        except DomainError as exc:
            return await self._reward_page(request, reward_id, _field_of(exc), values)
        return back(f"/console/rewards/{reward_id}?saved=updated")

    @post(
        "/{reward_id:uuid}/vouchers",
        opt=covers("POST /api/v1/rewards/{reward_id:uuid}/vouchers"),
    )
    async def import_vouchers(self, request: Request, reward_id: FromPath[UUID]) -> Template:
        """A CSV of codes, one a line. Any blank, repeated or broken line: every such line is
        listed and nothing is imported. Codes already in the pool are skipped, so sending the
        same file twice adds them once."""
        principal = staff(request, "rewards:manage")
        upload = (await request.form()).get("file")
        problems: list[str] = []
        try:
            if not isinstance(upload, UploadFile):
                raise InvalidInput(N_("choose a CSV file to upload"), field="file")
            try:
                text = (await upload.read()).decode("utf-8-sig")
            except UnicodeDecodeError:
                raise InvalidInput(N_("is not UTF-8 text"), field="file") from None
            codes, found = vouchers.read_codes(text)
            problems = [
                _line_problem(p.problem, line=p.line, code=p.code, first=p.first_line)
                for p in found
            ]
            if problems:
                raise InvalidInput(N_("some lines need fixing; nothing was imported"), field="file")
            if not codes:
                raise InvalidInput(N_("has no codes"), field="file")
            if len(codes) > vouchers.MAX_CODES:
                raise InvalidInput(N_("has more than 10,000 codes; split it"), field="file")
            result = await vouchers.import_vouchers(
                reward_id, reward_schemas.VoucherImportCreate(codes=codes), principal
            )
        except DomainError as exc:
            return await self._reward_page(request, reward_id, exc, problems=problems)
        return await self._reward_page(request, reward_id, imported=result)


def _line_problem(kind: str, **values: Any) -> str:
    return _(LINE_PROBLEMS[kind]) % values


async def _created_id(data: reward_schemas.RewardCreate, principal: Principal) -> UUID:
    return (await catalog.create_reward(data, principal)).id
