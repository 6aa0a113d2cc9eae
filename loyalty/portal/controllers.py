"""Member portal pages. Every page calls the same domain services as the API, with the
signed-in member as the principal, so a member can only ever reach their own data."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

import msgspec
import segno
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.types import Empty

from loyalty.auth import Principal
from loyalty.errors import DomainError
from loyalty.events import service as events
from loyalty.http.middleware import client_address
from loyalty.infrastructure import i18n
from loyalty.infrastructure.sessions import start_new_session
from loyalty.members import privacy
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.points import service as points
from loyalty.portal import schemas, service
from loyalty.referrals import service as referrals
from loyalty.rewards import eligibility, redemptions
from loyalty.rewards import schemas as reward_schemas
from loyalty.settings import Settings
from loyalty.tiers import service as tiers

SIGN_IN = "/portal/sign-in"
CHANNELS = ("email", "sms", "wechat", "phone", "post")
ENTRY_KINDS = (
    "purchase_earn",
    "referral_earn",
    "bonus",
    "redemption",
    "reversal",
    "expiry",
    "adjustment",
    "transfer",
)


def me(request: Request) -> Principal | None:
    principal = request.scope.get("user")
    return principal if isinstance(principal, Principal) and principal.kind == "member" else None


def page(name: str, request: Request, status: int = 200, **context: Any) -> Template:
    return Template(
        f"portal/{name}.html",
        context={"me": me(request), "path": request.url.path, **context},
        status_code=status,
    )


def problem(exc: DomainError) -> str:
    return service.problem_text(exc)


async def _signed_in(request: Request, principal: Principal) -> Redirect:
    await start_new_session(request, {"member_id": str(principal.id)})
    return Redirect("/portal", status_code=303)


async def _sign_in(
    request: Request, template: str, identifier: str, attempt: Awaitable[Principal]
) -> Template | Redirect:
    """Sign in with the attempt's principal, or show the form again with the problem."""
    try:
        principal = await attempt
    except DomainError as exc:
        return page(template, request, exc.status_code, error=problem(exc), identifier=identifier)
    return await _signed_in(request, principal)


@dataclass
class IdentifierForm:
    identifier: str = ""


@dataclass
class CodeForm:
    identifier: str = ""
    code: str = ""


@dataclass
class PasswordForm:
    identifier: str = ""
    password: str = ""


@dataclass
class SignUpForm:
    name: str = ""
    email: str = ""
    phone: str = ""
    referral_code: str = ""
    consents: list[str] = field(default_factory=list)


@dataclass
class SignUpCodeForm:
    token: str = ""
    code: str = ""


@dataclass
class ProfileForm:
    name: str = ""
    birthday: str = ""
    line1: str = ""
    city: str = ""
    postcode: str = ""
    spouse: str = ""
    hobbies: str = ""
    preferences: str = ""


@dataclass
class ContactForm:
    field: str = ""
    value: str = ""


@dataclass
class OneCode:
    code: str = ""


@dataclass
class NewPassword:
    password: str = ""


@dataclass
class PreferencesForm:
    channels: list[str] = field(default_factory=list)
    consents: list[str] = field(default_factory=list)


@dataclass
class RequestForm:
    kind: str = "request"
    subject: str = ""
    body: str = ""


@dataclass
class RedeemForm:
    quantity: str = "1"
    key: str = ""


@dataclass
class ReasonForm:
    reason: str = ""


class PortalController(Controller):
    path = "/portal"
    include_in_schema = False

    # --- signing in and up ----------------------------------------------------------------

    @get("/sign-in")
    async def sign_in_form(self, request: Request) -> Template | Redirect:
        if me(request):
            return Redirect("/portal")
        return page("sign_in", request)

    @post("/sign-in")
    async def send_code(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[IdentifierForm],
    ) -> Template:
        try:
            await service.request_sign_in_code(
                data.identifier[:254],
                redis=request.app.state.redis,
                client=client_address(request),
                settings=settings,
            )
        except DomainError as exc:
            return page(
                "sign_in",
                request,
                exc.status_code,
                error=problem(exc),
                identifier=data.identifier[:254],
            )
        return page("sign_in_code", request, identifier=data.identifier[:254])

    @post("/sign-in/code")
    async def check_code(
        self, request: Request, settings: NamedDependency[Settings], data: URLEncodedBody[CodeForm]
    ) -> Template | Redirect:
        return await _sign_in(
            request,
            "sign_in_code",
            data.identifier[:254],
            service.sign_in_with_code(
                data.identifier[:254],
                data.code[:12],
                redis=request.app.state.redis,
                client=client_address(request),
                settings=settings,
            ),
        )

    @post("/sign-in/password")
    async def check_password(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[PasswordForm],
    ) -> Template | Redirect:
        return await _sign_in(
            request,
            "sign_in",
            data.identifier[:254],
            service.sign_in_with_password(
                data.identifier[:254],
                data.password[:128],
                redis=request.app.state.redis,
                client=client_address(request),
                settings=settings,
            ),
        )

    @get("/signup")
    async def sign_up_form(
        self, request: Request, ref: Annotated[str, QueryParameter(max_length=20)] = ""
    ) -> Template:
        return page("sign_up", request, form=SignUpForm(referral_code=ref), channels=CHANNELS)

    @post("/signup")
    async def sign_up(self, request: Request, settings: NamedDependency[Settings]) -> Template:
        data = await _form(request, SignUpForm)
        try:
            form = msgspec.convert(
                {**data.__dict__, "consents": [c for c in data.consents if c in CHANNELS]},
                schemas.SignUp,
            )
            token = await service.start_sign_up(
                form,
                redis=request.app.state.redis,
                client=client_address(request),
                settings=settings,
            )
        except msgspec.ValidationError as exc:
            return page("sign_up", request, 400, error=str(exc), form=data, channels=CHANNELS)
        except DomainError as exc:
            return page(
                "sign_up",
                request,
                exc.status_code,
                error=problem(exc),
                form=data,
                channels=CHANNELS,
                field=exc.field,
            )
        return page("sign_up_code", request, token=token, sent_to=data.email or data.phone)

    @post("/signup/code")
    async def sign_up_code(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[SignUpCodeForm],
    ) -> Template | Redirect:
        try:
            principal = await service.finish_sign_up(
                data.token[:100],
                data.code[:12],
                redis=request.app.state.redis,
                client=client_address(request),
                settings=settings,
            )
        except DomainError as exc:
            return page(
                "sign_up_code", request, exc.status_code, error=problem(exc), token=data.token[:100]
            )
        return await _signed_in(request, principal)

    @post("/sign-out")
    async def sign_out(self, request: Request) -> Redirect:
        request.scope["session"] = Empty  # type: ignore[typeddict-item]
        return Redirect(SIGN_IN, status_code=303)

    # --- the member's pages ---------------------------------------------------------------

    @get("/")
    async def home(self, request: Request) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        member = await members.get_member(principal.id, principal)
        balance = await points.balance(principal.id, principal)
        tier = await tiers.status(principal.id, principal)
        inbox = await events.inbox(principal.id, limit=3)
        return page("home", request, member=member, balance=balance, tier=tier, inbox=inbox)

    @get("/points")
    async def history(
        self,
        request: Request,
        kind: Annotated[str, QueryParameter(max_length=32)] = "",
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        kind = kind if kind in ENTRY_KINDS else ""
        try:
            entries = await points.statement(
                principal.id, principal, kind=kind or None, cursor=cursor, limit=20
            )
        except DomainError as exc:
            return page(
                "points",
                request,
                exc.status_code,
                error=problem(exc),
                kinds=ENTRY_KINDS,
                kind=kind,
                entries=None,
            )
        return page("points", request, entries=entries, kinds=ENTRY_KINDS, kind=kind)

    @get("/rewards")
    async def catalog(self, request: Request) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        catalog = await eligibility.member_catalog(principal.id, principal)
        mine = await redemptions.member_redemptions(principal.id, principal)
        return page("rewards", request, catalog=catalog, redemptions=mine)

    @get("/rewards/{reward_id:uuid}")
    async def confirm_redeem(
        self, request: Request, reward_id: FromPath[UUID]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        catalog = await eligibility.member_catalog(principal.id, principal)
        item = next((i for i in catalog.items if i.reward.id == reward_id), None)
        if item is None:
            return page(
                "rewards",
                request,
                404,
                error=i18n.gettext("This reward is not on offer."),
                catalog=catalog,
                redemptions=[],
            )
        return page("redeem", request, item=item, catalog=catalog, key=secrets.token_urlsafe(12))

    @post("/rewards/{reward_id:uuid}")
    async def redeem(
        self, request: Request, reward_id: FromPath[UUID], data: URLEncodedBody[RedeemForm]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        try:
            if not data.quantity.strip().isdecimal():
                # Not a number at all: the form broke its shape (400), as a JSON body would.
                raise DomainError(i18n.gettext("Enter a whole number."), field="quantity")
            redemption, _ = await redemptions.redeem(
                principal.id,
                reward_schemas.RedemptionIn(
                    reward_id=reward_id,
                    quantity=max(1, min(int(data.quantity), 100)),
                    idempotency_key=f"portal:{data.key[:100]}",
                ),
                principal,
            )
        except DomainError as exc:
            catalog = await eligibility.member_catalog(principal.id, principal)
            mine = await redemptions.member_redemptions(principal.id, principal)
            return page(
                "rewards",
                request,
                exc.status_code,
                error=problem(exc),
                catalog=catalog,
                redemptions=mine,
            )
        return page("redeemed", request, redemption=redemption)

    @get("/redemptions/{redemption_id:uuid}")
    async def redemption(
        self, request: Request, redemption_id: FromPath[UUID]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        try:
            redemption = await redemptions.get_redemption(redemption_id, principal)
        except DomainError as exc:
            return page(
                "redeemed",
                request,
                exc.status_code,
                error=i18n.gettext("Not found."),
                redemption=None,
            )
        return page("redeemed", request, redemption=redemption)

    @post("/redemptions/{redemption_id:uuid}/cancel")
    async def cancel_redemption(
        self, request: Request, redemption_id: FromPath[UUID]
    ) -> Redirect | Template:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        try:
            await redemptions.cancel(
                redemption_id, reward_schemas.CancelIn(reason="cancelled by the member"), principal
            )
        except DomainError as exc:
            catalog = await eligibility.member_catalog(principal.id, principal)
            mine = await redemptions.member_redemptions(principal.id, principal)
            return page(
                "rewards",
                request,
                exc.status_code,
                error=problem(exc),
                catalog=catalog,
                redemptions=mine,
            )
        return Redirect("/portal/rewards", status_code=303)

    @get("/referrals")
    async def referrals_page(self, request: Request) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        mine = await referrals.member_referrals(principal.id, principal)
        qr = segno.make(mine.link, error="m").svg_inline(
            scale=5, title=i18n.gettext("QR code of your referral link")
        )
        settings = await referrals.get_referral_settings()
        return page("referrals", request, referrals=mine, qr=qr, settings=settings)

    @get("/messages")
    async def messages(self, request: Request) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        inbox = await events.inbox(principal.id, limit=50)
        return page("messages", request, inbox=inbox)

    @get("/profile")
    async def profile(self, request: Request) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        member = await members.get_member(principal.id, principal)
        return page("profile", request, member=member)

    @post("/profile")
    async def save_profile(
        self, request: Request, data: URLEncodedBody[ProfileForm]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        member = await members.get_member(principal.id, principal)
        try:
            household = msgspec.structs.replace(
                member.household or member_schemas.Household(), spouse=data.spouse.strip()[:100]
            )
            update = msgspec.convert(
                {
                    "name": data.name.strip(),
                    "birthday": data.birthday or None,
                    "address": {
                        **msgspec.to_builtins(member.address or member_schemas.Address()),
                        "line1": data.line1.strip(),
                        "city": data.city.strip(),
                        "postcode": data.postcode.strip(),
                    },
                    "household": msgspec.to_builtins(household),
                    "hobbies": _listed(data.hobbies),
                    "consumption_preferences": _listed(data.preferences),
                },
                member_schemas.MemberUpdate,
            )
            member = await members.update_member(principal.id, update, principal)
        except msgspec.ValidationError as exc:
            return page("profile", request, 400, error=str(exc), member=member)
        except DomainError as exc:
            return page("profile", request, exc.status_code, error=problem(exc), member=member)
        return page("profile", request, member=member, saved=True)

    @post("/profile/contact")
    async def change_contact(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[ContactForm],
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        member = await members.get_member(principal.id, principal)
        if data.field not in ("email", "phone"):
            return page(
                "profile", request, 400, error=i18n.gettext("Choose phone or email."), member=member
            )
        try:
            await service.start_contact_change(
                principal,
                data.field,
                data.value[:254],
                redis=request.app.state.redis,
                settings=settings,
            )
        except DomainError as exc:
            return page("profile", request, exc.status_code, error=problem(exc), member=member)
        return page("profile", request, member=member, verifying=data.value[:254])

    @post("/profile/contact/confirm")
    async def confirm_contact(
        self, request: Request, settings: NamedDependency[Settings], data: URLEncodedBody[OneCode]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        try:
            member = await service.confirm_contact_change(
                principal,
                data.code[:12],
                redis=request.app.state.redis,
                client=client_address(request),
                settings=settings,
            )
        except DomainError as exc:
            member = await members.get_member(principal.id, principal)
            return page(
                "profile",
                request,
                exc.status_code,
                error=problem(exc),
                member=member,
                verifying="…",
            )
        return page("profile", request, member=member, saved=True)

    @post("/profile/password")
    async def set_password(
        self, request: Request, data: URLEncodedBody[NewPassword]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        member = await members.get_member(principal.id, principal)
        try:
            await service.set_password(principal, data.password)
        except DomainError as exc:
            return page("profile", request, exc.status_code, error=problem(exc), member=member)
        return page("profile", request, member=member, saved=True)

    @get("/preferences")
    async def preferences(self, request: Request) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        member = await members.get_member(principal.id, principal)
        return page("preferences", request, member=member, channels=CHANNELS)

    @post("/preferences")
    async def save_preferences(self, request: Request) -> Template | Redirect:
        data = await _form(request, PreferencesForm)
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        member = await members.get_member(principal.id, principal)
        granted = {c for c in data.consents if c in CHANNELS}
        before = {c.channel for c in member.contact_preferences.consents}
        order = [c for c in data.channels if c in CHANNELS]
        member = await service.save_preferences(
            principal,
            list(dict.fromkeys(order + sorted(granted - set(order)))),
            {c: c in granted for c in CHANNELS if c in granted or c in before},
            method="portal preferences page",
        )
        return page("preferences", request, member=member, channels=CHANNELS, saved=True)

    @get("/service")
    async def my_service(
        self, request: Request, settings: NamedDependency[Settings]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        tier = await tiers.status(principal.id, principal)
        return page("service", request, tier=tier, settings=settings)

    @post("/service")
    async def send_request(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[RequestForm],
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        tier = await tiers.status(principal.id, principal)
        try:
            form = msgspec.convert(data.__dict__, schemas.ServiceRequest)
        except msgspec.ValidationError:
            return page(
                "service",
                request,
                400,
                tier=tier,
                settings=settings,
                error=i18n.gettext("Choose a kind and fill in the subject and message."),
            )
        await service.send_request(principal, form)
        return page("service", request, tier=tier, settings=settings, sent=True)

    @get("/privacy")
    async def privacy(self, request: Request) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        return page("privacy", request, pending=await privacy.pending_closure(principal))

    @get("/privacy/export")
    async def export(self, request: Request) -> Response | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN)
        data = await privacy.export_data(principal)
        return Response(
            msgspec.json.encode(data),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
        )

    @post("/privacy/close")
    async def close(
        self, request: Request, data: URLEncodedBody[ReasonForm]
    ) -> Template | Redirect:
        principal = me(request)
        if principal is None:
            return Redirect(SIGN_IN, status_code=303)
        try:
            await privacy.request_closure(principal, data.reason)
        except DomainError as exc:
            return page("privacy", request, exc.status_code, error=problem(exc), pending=True)
        return page("privacy", request, pending=True, sent=True)


async def _form(request: Request, shape: type) -> Any:
    """A form with repeatable fields (checkboxes): one value or many, always a list."""
    form = await request.form()
    values: dict[str, Any] = {}
    for name, kind in shape.__annotations__.items():
        if "list" in str(kind):
            values[name] = [str(v)[:254] for v in form.getall(name, [])][:20]
        elif name in form:
            values[name] = str(form.get(name))[:254]
    return shape(**values)


def _listed(text: str) -> list[str]:
    return [part.strip()[:100] for part in text.replace("，", ",").split(",") if part.strip()][:30]
