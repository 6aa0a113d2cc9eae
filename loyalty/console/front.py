"""A rep's front-line pages: registering a customer (with the live duplicate check and, for
a customer already on file, asking the manager for it) and the rep's own swap requests.
Registration runs the API's enrolment workflow; swaps the API's swap service."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, get, post
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.console.common import back, convert, form, form_page, staff
from loyalty.console.once import form_key, new_key, once
from loyalty.errors import Conflict, DomainError, InvalidInput
from loyalty.http.routes import covers
from loyalty.infrastructure.i18n import N_
from loyalty.members import registrations
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.reps import member_requests, swaps
from loyalty.reps import schemas as rep_schemas
from loyalty.staff import service as staff_service
from loyalty.workflows.enrolment import enrol_member

KEY_STAFF_ROWS = 3
ORGANISATION_SECTIONS = ("company_profile", "operations", "owner", "settlement_habits")
GENDERS = ("female", "male", "other", "undisclosed")

REGISTER_SAVED = {
    "asked": N_("Your managers are told that you ask for this customer."),
    "asked_before": N_("You asked for this customer today already; your managers have it."),
}
SWAPS_SAVED = {"swap": N_("Your swap request is with your manager.")}

PhoneQuery = Annotated[str, QueryParameter(max_length=30)]
EmailQuery = Annotated[str, QueryParameter(max_length=254)]


def _text(values: dict[str, Any], name: str) -> str:
    value = values.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def registration_input(values: dict[str, Any]) -> member_schemas.MemberCreate:
    """The registration form as the API's enrolment input (the same validation): a person
    with a few archive fields, or an organisation with its sections and key staff."""
    kind = values.get("kind") or "person"
    data: dict[str, Any] = {
        "kind": kind,
        "name": _text(values, "name"),
        "phone": _text(values, "phone") or None,
        "email": _text(values, "email") or None,
        "notes": _text(values, "notes"),
        "source": _text(values, "source"),
    }
    if kind == "organisation":
        key_staff = []
        for i in range(KEY_STAFF_ROWS):
            person = {
                field: _text(values, f"key_{field}_{i}") for field in ("name", "role", "phone")
            }
            if any(person.values()):
                key_staff.append(person)
        data["organisation"] = {
            **{section: _text(values, section) for section in ORGANISATION_SECTIONS},
            "key_staff": key_staff,
        }
    else:
        data["occupation"] = _text(values, "occupation")
        data["gender"] = _text(values, "gender") or None
        data["birthday"] = _text(values, "birthday") or None
        if _text(values, "city"):
            data["address"] = {"city": _text(values, "city")}
    return convert(data, member_schemas.MemberCreate)


class FrontPages(Controller):
    path = "/"

    async def _register_page(
        self,
        request: Request,
        values: dict[str, Any] | None = None,
        error: DomainError | None = None,
        existing: list[registrations.Registered] | None = None,
        status: int = 200,
    ) -> Template:
        values = values or {}
        return form_page(
            request,
            "front_register.html",
            REGISTER_SAVED,
            error,
            status=status,
            form=values,
            form_key=values.get("form_key") or new_key(),
            existing=existing or [],
            phone=_text(values, "phone"),
            email=_text(values, "email"),
            key_rows=range(KEY_STAFF_ROWS),
            sections=ORGANISATION_SECTIONS,
            genders=GENDERS,
        )

    @get("/register")
    async def register_form(self, request: Request) -> Template:
        staff(request, "members:write")
        return await self._register_page(request)

    @get("/register/check")
    async def check(
        self, request: Request, phone: PhoneQuery = "", email: EmailQuery = ""
    ) -> Template:
        """The live duplicate check: the existing-customer panel for what was typed (empty
        when nobody holds the phone or email), as an HTML fragment for the form's script."""
        principal = staff(request, "members:write")
        found = await registrations.find_registered(principal, phone, email)
        return Template(
            "front_existing.html",
            context={"existing": found, "phone": phone.strip(), "email": email.strip()},
        )

    @post("/register", opt=covers("POST /api/v1/members"))
    async def register(self, request: Request) -> Template | Redirect:
        principal = staff(request, "members:write")
        values = await form(request)
        try:
            data = registration_input(values)
            registrations.check_reachable(data)

            async def register_once() -> UUID:
                existing = await registrations.find_registered(principal, data.phone, data.email)
                if existing:
                    raise Conflict(
                        N_("this customer is registered already"), field=existing[0].field
                    )
                return (await enrol_member(data, principal)).id

            member_id = await once(
                request,
                principal,
                "register",
                form_key(values.get("form_key")),
                UUID,
                register_once,
            )
        except DomainError as exc:
            existing = []
            if isinstance(exc, Conflict):
                existing = await registrations.find_registered(
                    principal, _text(values, "phone"), _text(values, "email")
                )
            if exc.field == "form_key":
                values.pop("form_key", None)  # a fresh key: the form may be sent once more
            return await self._register_page(request, values, exc, existing)
        return back(f"/console/members/{member_id}?saved=registered")

    @post("/register/ask")
    async def ask(self, request: Request) -> Template | Redirect:
        """Ask the managers for a customer someone else holds (see `reps.member_requests`)."""
        principal = staff(request, "members:write")
        values = await form(request)
        phone, email = _text(values, "phone"), _text(values, "email")
        try:
            told = await member_requests.ask_for_member(
                principal, phone, email, _text(values, "note")
            )
        except DomainError as exc:
            existing = await registrations.find_registered(principal, phone, email)
            return await self._register_page(request, values, exc, existing)
        return back(f"/console/register?saved={'asked' if told else 'asked_before'}")

    # --- my swaps ---------------------------------------------------------------------

    async def _swaps_page(
        self, request: Request, error: DomainError | None = None, values: dict | None = None
    ) -> Template:
        principal = staff(request, "members:read")
        mine = [
            swap
            for swap in await swaps.list_swaps(principal, None)
            if swap.requested_by == principal.label or principal.id in (swap.rep_a, swap.rep_b)
        ]
        own_members = await members.search_members(principal, limit=500)
        return form_page(
            request,
            "front_my_swaps.html",
            SWAPS_SAVED,
            error,
            pending=[swap for swap in mine if swap.status == "pending"],
            decided=[swap for swap in mine if swap.status != "pending"],
            names=await _names(principal, mine),
            own_members=own_members.items,
            number=members.format_number,
            form=values or {},
        )

    @get("/my-swaps", opt=covers("GET /api/v1/swaps"))
    async def my_swaps(self, request: Request) -> Template:
        """The rep's own swap requests with their outcome, and the form to ask for one."""
        return await self._swaps_page(request)

    @post("/my-swaps", opt=covers("POST /api/v1/swaps"))
    async def ask_swap(self, request: Request) -> Template | Redirect:
        principal = staff(request, "members:read")
        values = await form(request)
        try:
            mine = _text(values, "member_id")
            if not mine:
                raise InvalidInput(N_("choose one of your members"), field="member_id")
            try:
                member_id = UUID(mine)
            except ValueError:
                raise InvalidInput(N_("choose one of your members"), field="member_id") from None
            await members.get_member(member_id, principal)
            number = _text(values, "other_number")
            if not number:
                raise InvalidInput(N_("give the other member's number"), field="other_number")
            try:
                other = await members.resolve_member_id(number=number)
            except InvalidInput:
                raise InvalidInput(N_("no member has this number"), field="other_number") from None
            data = convert(
                {"member_a": member_id, "member_b": other, "reason": _text(values, "reason")},
                rep_schemas.SwapCreate,
            )
            await swaps.request_swap(data, principal)
        except DomainError as exc:
            return await self._swaps_page(request, exc, values)
        return back("/console/my-swaps?saved=swap")


async def _names(principal: Principal, found: list[rep_schemas.Swap]) -> dict[UUID, str]:
    """Names for the swap list: a member the rep may see by name and number, another rep's
    member by its number only (the number the rep typed, or was offered); reps by name."""
    names: dict[UUID, str] = {}
    others: list[UUID] = []
    for swap in found:
        for member_id in (swap.member_a, swap.member_b):
            if member_id in names or member_id in others:
                continue
            try:
                member = await members.get_member(member_id, principal)
                names[member_id] = f"{member.name} ({members.format_number(member.number)})"
            except DomainError:
                others.append(member_id)
    for member_id, number in (await members.numbers(others)).items():
        names[member_id] = members.format_number(number)
    for person in await staff_service.list_staff():
        names[person.id] = person.display_name or person.username
    return names
