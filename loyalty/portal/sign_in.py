"""Portal pages for signing in (by a code sent to the phone or email, or by password),
signing up, and signing out."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.types import Empty

from loyalty.auth import Principal
from loyalty.errors import DomainError
from loyalty.infrastructure.sessions import start_new_session
from loyalty.portal import schemas, service
from loyalty.portal.context import code_context
from loyalty.portal.pages import CHANNELS, SIGN_IN, form, me, page, problem
from loyalty.settings import Settings


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


class SignInPages(Controller):
    path = "/"

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
        identifier = data.identifier[:254]
        try:
            await service.request_sign_in_code(identifier, **code_context(request, settings))
        except DomainError as exc:
            return page(
                "sign_in", request, exc.status_code, error=problem(exc), identifier=identifier
            )
        return page("sign_in_code", request, identifier=identifier)

    @post("/sign-in/code")
    async def check_code(
        self, request: Request, settings: NamedDependency[Settings], data: URLEncodedBody[CodeForm]
    ) -> Template | Redirect:
        identifier = data.identifier[:254]
        attempt = service.sign_in_with_code(
            identifier, data.code[:12], **code_context(request, settings)
        )
        return await _sign_in(request, "sign_in_code", identifier, attempt)

    @post("/sign-in/password")
    async def check_password(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: URLEncodedBody[PasswordForm],
    ) -> Template | Redirect:
        identifier = data.identifier[:254]
        attempt = service.sign_in_with_password(
            identifier, data.password[:128], **code_context(request, settings)
        )
        return await _sign_in(request, "sign_in", identifier, attempt)

    @get("/signup")
    async def sign_up_form(
        self, request: Request, ref: Annotated[str, QueryParameter(max_length=20)] = ""
    ) -> Template:
        return page("sign_up", request, form=SignUpForm(referral_code=ref), channels=CHANNELS)

    @post("/signup")
    async def sign_up(self, request: Request, settings: NamedDependency[Settings]) -> Template:
        data = await form(request, SignUpForm)
        try:
            sign_up = msgspec.convert(
                {**data.__dict__, "consents": [c for c in data.consents if c in CHANNELS]},
                schemas.SignUpCreate,
            )
            token = await service.start_sign_up(sign_up, **code_context(request, settings))
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
        token = data.token[:100]
        try:
            principal = await service.finish_sign_up(
                token, data.code[:12], **code_context(request, settings)
            )
        except DomainError as exc:
            return page("sign_up_code", request, exc.status_code, error=problem(exc), token=token)
        return await _signed_in(request, principal)

    @post("/sign-out")
    async def sign_out(self, request: Request) -> Redirect:
        request.scope["session"] = Empty  # type: ignore[typeddict-item]
        return Redirect(SIGN_IN, status_code=303)
