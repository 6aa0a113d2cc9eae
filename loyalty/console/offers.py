"""The marketing workspace: offers (compose, preview per channel, submit, approve or send
back, send with live progress, cancel, voucher pools from CSV, results) and automatic
offers. Pages call `loyalty.marketing` services with the API's permissions."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID, uuid4

from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath, QueryParameter
from litestar.response import Redirect, Template

from loyalty.console.common import (
    back,
    convert,
    form,
    form_page,
    local_datetime,
    page,
    staff,
)
from loyalty.errors import Conflict, DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.marketing import (
    automatic,
    offer_results,
    preview,
    schemas,
    segments,
    service,
    voucher_files,
)
from loyalty.rewards import catalog
from loyalty.settings import get_settings
from loyalty.tiers import service as tiers

MANAGE = "offers:manage"
APPROVE = "offers:approve"
REPORT = "marketing:report"
API = "/api/v1/offers"
ONE = "/api/v1/offers/{offer_id:uuid}"

# The steps every one-off offer goes through, in order (cancelled stands apart).
STEPS = ("draft", "submitted", "approved", "sending", "sent")
STATUSES = {
    "draft": N_("Draft"),
    "submitted": N_("Awaiting approval"),
    "approved": N_("Approved"),
    "sending": N_("Sending"),
    "sent": N_("Sent"),
    "cancelled": N_("Cancelled"),
}
BENEFITS = {
    "none": N_("No benefit (a message)"),
    "voucher": N_("Voucher codes from a pool"),
    "bonus_points": N_("Bonus points on purchases"),
    "reward_price": N_("A lower reward price"),
}
AUTO_KINDS = {
    "birthday": N_("Birthday"),
    "welcome": N_("Welcome to a tier"),
    "winback": N_("Win-back"),
}
AUTO_RULES = {
    "birthday": N_("members whose birthday is in the month"),
    "welcome": N_("members who entered one of its tiers this month"),
    "winback": N_("members with no purchase for the at-risk days, before they are lost"),
}
SAVED = {
    "created": N_("The offer is saved as a draft."),
    "changed": N_("The draft is saved."),
    "submitted": N_("The offer is submitted for approval."),
    "approved": N_("The offer is approved; it can be sent."),
    "sent_back": N_("The offer is sent back to its author with your comment."),
    "queued": N_("The offer is being sent."),
    "cancelled": N_("The offer is cancelled."),
}
ShortQuery = Annotated[str, QueryParameter(max_length=16)]
TEXT_FIELDS = ("title_en", "title_zh", "body_en", "body_zh")


def _local(value: Any) -> str:
    """A datetime as a datetime-local input shows it (business time zone)."""
    return value.astimezone(get_settings().tz).strftime("%Y-%m-%dT%H:%M") if value else ""


def _listed(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def form_values(offer: schemas.Offer | None = None, auto_kind: str = "") -> dict[str, Any]:
    """What the compose form shows: the offer's fields, or an empty draft."""
    if offer is None:
        return {"benefit": "none", "target_tiers": [], "auto_kind": auto_kind}
    return {
        **{name: getattr(offer, name) for name in TEXT_FIELDS},
        "valid_from": _local(offer.valid_from),
        "valid_until": _local(offer.valid_until),
        "target_tiers": offer.target_tiers,
        "segment_id": str(offer.segment_id or ""),
        "benefit": offer.benefit,
        "bonus_multiplier": str(offer.bonus_multiplier or ""),
        "reward_id": str(offer.reward_id or ""),
        "reward_points_cost": str(offer.reward_points_cost or ""),
        "auto_kind": offer.auto_kind or "",
    }


def offer_input(values: dict[str, Any], schema: type) -> Any:
    """The posted compose form as the API's input: the same validation, 422 naming the field.
    Fields of a benefit not chosen are left out, so a changed mind leaves nothing behind."""
    benefit = str(values.get("benefit", "none"))
    data: dict[str, Any] = {name: str(values.get(name, "")).strip() for name in TEXT_FIELDS}
    for name in ("valid_from", "valid_until"):
        when = local_datetime(str(values.get(name, "")), name)
        if when is None:
            raise InvalidInput(N_("is required"), field=name)
        data[name] = when
    data["target_tiers"] = _listed(values.get("target_tiers"))
    data["segment_id"] = str(values.get("segment_id", "")).strip() or None
    data["benefit"] = benefit
    data["bonus_multiplier"] = (
        str(values.get("bonus_multiplier", "")).strip() or None
        if benefit == "bonus_points"
        else None
    )
    for name in ("reward_id", "reward_points_cost"):
        data[name] = (
            str(values.get(name, "")).strip() or None if benefit == "reward_price" else None
        )
    if schema is schemas.OfferCreate:
        data["auto_kind"] = str(values.get("auto_kind", "")).strip() or None
    return convert(data, schema)


def _field_only(exc: DomainError) -> DomainError:
    """`target_tiers[0]` is shown under the tier boxes."""
    if exc.field and "[" in exc.field:
        exc.field = exc.field.split("[", 1)[0]
    return exc


async def _choices() -> dict[str, Any]:
    return {
        "tiers": (await tiers.ladder()).enabled,
        "segments": await segments.list_segments(),
        "rewards": await catalog.list_rewards(include_inactive=False),
    }


def _labels() -> dict[str, Any]:
    return {"statuses": STATUSES, "steps": STEPS, "benefits": BENEFITS, "auto_kinds": AUTO_KINDS}


class OfferPages(Controller):
    path = "/"

    # --- the list and composing --------------------------------------------------------

    @get("/offers", opt=covers(f"GET {API}"))
    async def offers(self, request: Request, status: ShortQuery = "") -> Template:
        staff(request, MANAGE)
        chosen = status if status in STATUSES else None
        return form_page(
            request,
            "offers_list.html",
            SAVED,
            offers=await service.list_offers(chosen, 200, 0),
            status=chosen or "",
            **_labels(),
        )

    async def _new_page(
        self,
        request: Request,
        values: dict[str, Any],
        error: DomainError | None = None,
    ) -> Template:
        return form_page(
            request,
            "offers_new.html",
            SAVED,
            _field_only(error) if error else None,
            values=values,
            **await _choices(),
            **_labels(),
        )

    @get("/offers/new")
    async def new_offer(self, request: Request, auto_kind: ShortQuery = "") -> Template:
        staff(request, MANAGE)
        values = form_values(auto_kind=auto_kind if auto_kind in AUTO_KINDS else "")
        values["form_id"] = str(uuid4())
        return await self._new_page(request, values)

    @post("/offers", opt=covers(f"POST {API}"))
    async def create(self, request: Request) -> Template | Redirect:
        principal = staff(request, MANAGE)
        values = await form(request)
        try:
            try:
                form_id = UUID(str(values.get("form_id", "")))
            except ValueError:
                form_id = uuid4()
            data = offer_input(values, schemas.OfferCreate)
            offer = await service.create_offer(data, principal, offer_id=form_id)
        except DomainError as exc:
            values["target_tiers"] = _listed(values.get("target_tiers"))
            return await self._new_page(request, values, exc)
        return back(f"/console/offers/{offer.id}?saved=created")

    # --- one offer --------------------------------------------------------------------

    async def _offer_page(
        self,
        request: Request,
        offer_id: UUID,
        error: DomainError | None = None,
        values: dict[str, Any] | None = None,
        report: dict[str, Any] | None = None,
        comment: str = "",
    ) -> Template:
        principal = staff(request, MANAGE)
        offer = await service.get_offer(offer_id)
        pending = (
            await service.why_not_approvable(offer_id)
            if offer.status in ("draft", "submitted")
            else None
        )
        return form_page(
            request,
            "offers_offer.html",
            SAVED,
            _field_only(error) if error else None,
            offer=offer,
            values=values or form_values(offer),
            previews=[preview.preview(offer, language) for language in ("en", "zh")],
            progress=await offer_results.progress(offer_id),
            approval_problem=pending,
            is_author=offer.created_by == principal.label,
            queued=request.query_params.get("saved") == "queued",
            report=report,
            comment=comment,
            **await _choices(),
            **_labels(),
        )

    @get("/offers/{offer_id:uuid}", opt=covers(f"GET {ONE}"))
    async def offer(self, request: Request, offer_id: FromPath[UUID]) -> Template:
        return await self._offer_page(request, offer_id)

    @post("/offers/{offer_id:uuid}", opt=covers(f"PUT {ONE}"))
    async def change(self, request: Request, offer_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, MANAGE)
        values = await form(request)
        try:
            data = offer_input(values, schemas.OfferUpdate)
            await service.update_offer(offer_id, data, principal)
        except DomainError as exc:
            values["target_tiers"] = _listed(values.get("target_tiers"))
            return await self._offer_page(request, offer_id, exc, values=values)
        return back(f"/console/offers/{offer_id}?saved=changed")

    async def _step(
        self, request: Request, offer_id: UUID, action: Any, done: str, already: tuple[str, ...]
    ) -> Template | Redirect:
        """One of the buttons; pressed twice, the second finds the offer already there (a
        state check) and shows the same page as the first."""
        try:
            await action()
        except Conflict as exc:
            current = await service.get_offer(offer_id)
            if current.status not in already:
                return await self._offer_page(request, offer_id, exc)
        except DomainError as exc:
            return await self._offer_page(request, offer_id, exc)
        return back(f"/console/offers/{offer_id}?saved={done}")

    @post("/offers/{offer_id:uuid}/submit", opt=covers(f"POST {ONE}/submit"))
    async def submit(self, request: Request, offer_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, MANAGE)
        return await self._step(
            request,
            offer_id,
            lambda: service.submit(offer_id, principal),
            "submitted",
            ("submitted",),
        )

    @post("/offers/{offer_id:uuid}/approve", opt=covers(f"POST {ONE}/approve"))
    async def approve(self, request: Request, offer_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, APPROVE)
        return await self._step(
            request,
            offer_id,
            lambda: service.approve(offer_id, principal),
            "approved",
            ("approved", "sending", "sent"),
        )

    @post("/offers/{offer_id:uuid}/send-back", opt=covers(f"POST {ONE}/send-back"))
    async def send_back(self, request: Request, offer_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, APPROVE)
        values = await form(request)
        comment = str(values.get("comment", ""))
        try:
            data = convert({"comment": comment.strip()}, schemas.OfferSendBack)
            await service.send_back(offer_id, data, principal)
        except DomainError as exc:
            return await self._offer_page(request, offer_id, exc, comment=comment)
        return back(f"/console/offers/{offer_id}?saved=sent_back")

    @post("/offers/{offer_id:uuid}/send", opt=covers(f"POST {ONE}/send"))
    async def send(self, request: Request, offer_id: FromPath[UUID]) -> Template | Redirect:
        staff(request, MANAGE)
        redis = request.app.state.redis
        return await self._step(
            request,
            offer_id,
            lambda: service.request_send(offer_id, redis),
            "queued",
            ("sending", "sent"),
        )

    @post("/offers/{offer_id:uuid}/cancel", opt=covers(f"POST {ONE}/cancel"))
    async def cancel(self, request: Request, offer_id: FromPath[UUID]) -> Template | Redirect:
        principal = staff(request, MANAGE)
        return await self._step(
            request,
            offer_id,
            lambda: service.cancel(offer_id, principal),
            "cancelled",
            ("cancelled",),
        )

    @post("/offers/{offer_id:uuid}/vouchers", opt=covers(f"POST {ONE}/vouchers"))
    async def vouchers(self, request: Request, offer_id: FromPath[UUID]) -> Template:
        """A CSV of codes: imported, with every line skipped reported by its number."""
        staff(request, MANAGE)
        values = await form(request)
        upload = values.get("file")
        try:
            if not isinstance(upload, UploadFile):
                raise InvalidInput(N_("choose a CSV file"), field="file")
            parsed = voucher_files.parse(await upload.read(voucher_files.MAX_BYTES + 1))
            result = await service.import_vouchers(
                offer_id, schemas.VoucherImportCreate(codes=parsed.codes)
            )
        except DomainError as exc:
            if exc.field == "codes":
                exc.field = "file"
            return await self._offer_page(request, offer_id, exc)
        problems = [
            {"line": p.line, "code": p.code, "problem": p.problem, "first_line": p.first_line}
            for p in parsed.problems
        ] + [
            {"line": parsed.lines[code], "code": code, "problem": voucher_files.IN_POOL}
            for code in result.skipped
        ]
        report = {
            "imported": result.imported,
            "left": result.vouchers_left,
            "problems": sorted(problems, key=lambda p: p["line"]),
        }
        return await self._offer_page(request, offer_id, report=report)

    @get("/offers/{offer_id:uuid}/progress")
    async def progress_fragment(
        self,
        request: Request,
        offer_id: FromPath[UUID],
        queued: Annotated[bool, QueryParameter()] = False,
    ) -> Template:
        """The send's progress alone, for the page's script to poll while it runs."""
        staff(request, MANAGE)
        return Template(
            "offers_progress.html",
            context={
                "progress": await offer_results.progress(offer_id),
                "queued": queued,
                **_labels(),
            },
        )

    @get("/offers/{offer_id:uuid}/results", opt=covers(f"GET {ONE}/results"))
    async def results(self, request: Request, offer_id: FromPath[UUID]) -> Template:
        staff(request, REPORT)
        offer = await service.get_offer(offer_id)
        figures = await offer_results.results(offer_id)
        bars = {
            "email": figures.delivered.get("email", 0),
            "sms": figures.delivered.get("sms", 0),
            "portal": figures.delivered.get("portal", 0),
            "opened": figures.opened,
            "redeemed": figures.redeemed,
            "failed": figures.failed,
        }
        return page(
            request,
            "offers_results.html",
            offer=offer,
            results=figures,
            bars=bars,
            most=max(bars.values(), default=0) or 1,
            most_tier=max((t.audience for t in figures.by_tier), default=0) or 1,
            **_labels(),
        )

    # --- automatic offers -------------------------------------------------------------

    @get("/automatic-offers")
    async def automatic_offers(self, request: Request) -> Template:
        staff(request, MANAGE)
        return page(
            request,
            "offers_automatic.html",
            templates=await automatic.overview(),
            schedule=automatic.SCHEDULE,
            rules=AUTO_RULES,
            **_labels(),
        )
