"""The member's account pages: profile, phone or email changes, password, contact
preferences, requests to the company's service line, and privacy (export, closure)."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import URLEncodedBody
from litestar.response import Template
from msgspec import UNSET

from loyalty.auth import Principal
from loyalty.errors import DomainError
from loyalty.infrastructure import i18n
from loyalty.members import privacy as member_privacy
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.portal import schemas, service
from loyalty.portal.context import code_context
from loyalty.portal.pages import CHANNELS, form, listed, member, page, problem
from loyalty.settings import Settings
from loyalty.tiers import service as tiers


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
    language: str = ""


@dataclass
class RequestForm:
    kind: str = "request"
    subject: str = ""
    body: str = ""


@dataclass
class ReasonForm:
    reason: str = ""


def _profile_update(
    data: ProfileForm, archive: member_schemas.Member
) -> member_schemas.MemberUpdate:
    """The profile form as an update of the archive; the address and household fields the
    form does not show keep their values."""
    household = msgspec.structs.replace(
        archive.household or member_schemas.Household(), spouse=data.spouse.strip()[:100]
    )
    return msgspec.convert(
        {
            "name": data.name.strip(),
            "birthday": data.birthday or None,
            "address": {
                **msgspec.to_builtins(archive.address or member_schemas.Address()),
                "line1": data.line1.strip(),
                "city": data.city.strip(),
                "postcode": data.postcode.strip(),
            },
            "household": msgspec.to_builtins(household),
            "hobbies": listed(data.hobbies),
            "consumption_preferences": listed(data.preferences),
        },
        member_schemas.MemberUpdate,
    )


def _profile_problem(
    request: Request, exc: DomainError, archive: member_schemas.Member, **context: object
) -> Template:
    return page("profile", request, exc.status_code, error=problem(exc), member=archive, **context)


async def _archive(principal: Principal) -> member_schemas.Member:
    return await members.get_member(principal.id, principal)


class AccountPages(Controller):
    path = "/"

    @get("/profile")
    async def profile(self, request: Request) -> Template:
        return page("profile", request, member=await _archive(member(request)))

    @post("/profile")
    async def save_profile(self, request: Request, data: URLEncodedBody[ProfileForm]) -> Template:
        principal = member(request)
        archive = await _archive(principal)
        try:
            update = _profile_update(data, archive)
            archive = await members.update_member(principal.id, update, principal)
        except msgspec.ValidationError as exc:
            return page("profile", request, 400, error=str(exc), member=archive)
        except DomainError as exc:
            return _profile_problem(request, exc, archive)
        return page("profile", request, member=archive, saved=True)

    @post("/profile/contact")
    async def change_contact(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[ContactForm],
    ) -> Template:
        principal = member(request)
        archive = await _archive(principal)
        if data.field not in ("email", "phone"):
            return page(
                "profile",
                request,
                400,
                error=i18n.gettext("Choose phone or email."),
                member=archive,
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
            return _profile_problem(request, exc, archive)
        return page("profile", request, member=archive, verifying=data.value[:254])

    @post("/profile/contact/confirm")
    async def confirm_contact(
        self, request: Request, settings: NamedDependency[Settings], data: URLEncodedBody[OneCode]
    ) -> Template:
        principal = member(request)
        try:
            archive = await service.confirm_contact_change(
                principal, data.code[:12], **code_context(request, settings)
            )
        except DomainError as exc:
            return _profile_problem(request, exc, await _archive(principal), verifying="…")
        return page("profile", request, member=archive, saved=True)

    @post("/profile/password")
    async def set_password(self, request: Request, data: URLEncodedBody[NewPassword]) -> Template:
        principal = member(request)
        archive = await _archive(principal)
        try:
            await service.set_password(principal, data.password)
        except DomainError as exc:
            return _profile_problem(request, exc, archive)
        return page("profile", request, member=archive, saved=True)

    @get("/preferences")
    async def preferences(self, request: Request) -> Template:
        archive = await _archive(member(request))
        return page("preferences", request, member=archive, channels=CHANNELS)

    @post("/preferences")
    async def save_preferences(self, request: Request) -> Template:
        data = await form(request, PreferencesForm)
        principal = member(request)
        archive = await _archive(principal)
        granted = {c for c in data.consents if c in CHANNELS}
        before = {c.channel for c in archive.contact_preferences.consents}
        order = [c for c in data.channels if c in CHANNELS]
        archive = await service.save_preferences(
            principal,
            list(dict.fromkeys(order + sorted(granted - set(order)))),
            {c: c in granted for c in CHANNELS if c in granted or c in before},
            method="portal preferences page",
            language=data.language if data.language in i18n.LANGUAGES else UNSET,
        )
        return page("preferences", request, member=archive, channels=CHANNELS, saved=True)

    @get("/service")
    async def my_service(self, request: Request, settings: NamedDependency[Settings]) -> Template:
        principal = member(request)
        tier = await tiers.status(principal.id, principal)
        return page("service", request, tier=tier, settings=settings)

    @post("/service")
    async def send_request(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[RequestForm],
    ) -> Template:
        principal = member(request)
        tier = await tiers.status(principal.id, principal)
        try:
            sent = msgspec.convert(data.__dict__, schemas.ServiceRequestCreate)
        except msgspec.ValidationError:
            return page(
                "service",
                request,
                400,
                tier=tier,
                settings=settings,
                error=i18n.gettext("Choose a kind and fill in the subject and message."),
            )
        await service.send_request(principal, sent)
        return page("service", request, tier=tier, settings=settings, sent=True)

    @get("/privacy")
    async def privacy(self, request: Request) -> Template:
        pending = await member_privacy.pending_closure(member(request))
        return page("privacy", request, pending=pending)

    @get("/privacy/export")
    async def export(self, request: Request) -> Response:
        data = await member_privacy.export_data(member(request))
        return Response(
            msgspec.json.encode(data),
            media_type="application/json",
            headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
        )

    @post("/privacy/close")
    async def close(self, request: Request, data: URLEncodedBody[ReasonForm]) -> Template:
        principal = member(request)
        try:
            await member_privacy.request_closure(principal, data.reason)
        except DomainError as exc:
            return page("privacy", request, exc.status_code, error=problem(exc), pending=True)
        return page("privacy", request, pending=True, sent=True)
