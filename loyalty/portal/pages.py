"""What every portal page shares: the signed-in member, rendering, forms, and the way back to
the sign-in page."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.response import Redirect, Template

from loyalty.auth import Principal
from loyalty.errors import DomainError
from loyalty.http.middleware import LANGUAGE_COOKIE
from loyalty.infrastructure import i18n
from loyalty.members import service as members

SIGN_IN = "/portal/sign-in"
CHANNELS = ("email", "sms", "wechat", "phone", "post")


class SignInFirst(Exception):
    """Raised by `member` on a page that needs a member; the portal answers it with the
    sign-in page (not a DomainError, so a page's own error handling never catches it)."""


def me(request: Request) -> Principal | None:
    principal = request.scope.get("user")
    return principal if isinstance(principal, Principal) and principal.kind == "member" else None


def member(request: Request) -> Principal:
    """The signed-in member, else off to the sign-in page."""
    principal = me(request)
    if principal is None:
        raise SignInFirst
    return principal


async def follow_member_language(request: Request) -> None:
    """Before every portal page: the language switch (`?lang=`) is the signed-in member's
    choice, stored for their messages (email and text messages too); with no switch and no
    remembered choice in this browser, the page speaks the member's stored language."""
    principal = me(request)
    if principal is None:
        return
    asked = request.query_params.get("lang")
    if asked in i18n.LANGUAGES:
        await members.set_language(principal.id, asked, actor="portal")
    elif LANGUAGE_COOKIE not in request.cookies:
        stored = await members.language_of(principal.id)
        if stored in i18n.LANGUAGES:
            # Reset with the page's own token by the page middleware when the request ends.
            i18n.current.set(stored)


def to_sign_in(request: Request, _: SignInFirst) -> Redirect:
    # After a form post, 303 so the browser follows with a GET.
    return Redirect(SIGN_IN, status_code=303 if request.method == "POST" else 302)


def page(name: str, request: Request, status: int = 200, **context: Any) -> Template:
    return Template(
        f"portal/{name}.html",
        context={"me": me(request), "path": request.url.path, **context},
        status_code=status,
    )


def problem(exc: DomainError) -> str:
    """A domain problem as a sentence for the member, in their language where we can."""
    return i18n.gettext(exc.detail) if exc.detail else i18n.gettext("Something went wrong.")


async def form(request: Request, shape: type) -> Any:
    """A form with repeatable fields (checkboxes): one value or many, always a list."""
    posted = await request.form()
    values: dict[str, Any] = {}
    for name, kind in shape.__annotations__.items():
        if "list" in str(kind):
            values[name] = [str(v)[:254] for v in posted.getall(name, [])][:20]
        elif name in posted:
            values[name] = str(posted.get(name))[:254]
    return shape(**values)


def listed(text: str) -> list[str]:
    """A comma-separated form field (either comma) as a short list."""
    return [part.strip()[:100] for part in text.replace("，", ",").split(",") if part.strip()][:30]
