"""The member's own JSON API (`/api/v1/me`) for a mobile app: the portal's functions through
the same services, authenticated with a member token from a one-time code or password."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_202_ACCEPTED

from loyalty.auth import Principal, current_principal, member_only
from loyalty.events import service as events
from loyalty.http.middleware import bearer_token
from loyalty.http.openapi import problems, replayed
from loyalty.infrastructure import i18n
from loyalty.members import privacy
from loyalty.members import schemas as member_schemas
from loyalty.members import service as members
from loyalty.points import schemas as point_schemas
from loyalty.points import service as points
from loyalty.portal import schemas, service
from loyalty.portal.context import code_context
from loyalty.referrals import schemas as referral_schemas
from loyalty.referrals import service as referrals
from loyalty.rewards import eligibility, redemptions
from loyalty.rewards import schemas as reward_schemas
from loyalty.settings import Settings
from loyalty.tiers import schemas as tier_schemas
from loyalty.tiers import service as tiers

SENT = schemas.Accepted(
    status="sent", detail="If this phone or email belongs to a member, a code is on its way."
)


async def _token(principal: Principal, request: Request, settings: Settings) -> schemas.Token:
    token = await service.issue_token(principal, redis=request.app.state.redis, settings=settings)
    return schemas.Token(
        token=token, member_id=str(principal.id), expires_in=settings.token_ttl_hours * 3600
    )


class MemberSignInController(Controller):
    path = "/api/v1/me"
    tags = ["me"]

    @post(
        "/sign-in/code",
        status_code=HTTP_202_ACCEPTED,
        summary="Send a one-time sign-in code",
        responses=problems(400, 422, 429),
    )
    async def send_code(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.SignInCodeCreate],
    ) -> schemas.Accepted:
        """To the member's email or phone; the answer is the same whether or not an account
        exists. Codes expire in 10 minutes; sending is rate-limited per address and per
        phone or email (429 with Retry-After)."""
        await service.request_sign_in_code(data.identifier, **code_context(request, settings))
        return SENT

    @post(
        "/sign-in",
        status_code=HTTP_201_CREATED,
        summary="Sign in with a one-time code",
        responses=problems(400, 401, 422, 429),
    )
    async def sign_in(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.CodeSignInCreate],
    ) -> schemas.Token:
        """A code works once. A wrong code answers 401 without saying whether the account
        exists; repeated failures are rate-limited per account and per address."""
        principal = await service.sign_in_with_code(
            data.identifier, data.code, **code_context(request, settings)
        )
        return await _token(principal, request, settings)

    @post(
        "/sign-in/password",
        status_code=HTTP_201_CREATED,
        summary="Sign in with a password",
        responses=problems(400, 401, 422, 429),
    )
    async def sign_in_password(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.PasswordSignInCreate],
    ) -> schemas.Token:
        """For members who set a password."""
        principal = await service.sign_in_with_password(
            data.identifier, data.password, **code_context(request, settings)
        )
        return await _token(principal, request, settings)

    @post(
        "/sign-up",
        status_code=HTTP_202_ACCEPTED,
        summary="Start a self sign-up",
        responses=problems(400, 422, 429),
    )
    async def sign_up(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.SignUpCreate],
    ) -> schemas.SignUpStarted:
        """Sends a code to the email (or phone); the member exists once it comes back through
        `/sign-up/confirm`. An optional referral code links the referral."""
        token = await service.start_sign_up(data, **code_context(request, settings))
        return schemas.SignUpStarted(sign_up_token=token, sent_to=data.email or data.phone)

    @post(
        "/sign-up/confirm",
        status_code=HTTP_201_CREATED,
        summary="Finish a self sign-up with the code",
        responses=problems(400, 401, 422, 429),
    )
    async def confirm_sign_up(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.SignUpConfirmationCreate],
    ) -> schemas.Token:
        principal = await service.finish_sign_up(
            data.sign_up_token, data.code, **code_context(request, settings)
        )
        return await _token(principal, request, settings)


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["me"]
    guards = [member_only]

    @post("/sign-out", status_code=204, summary="End this token", responses=problems(401, 403))
    async def sign_out(self, request: Request) -> None:
        token = bearer_token(request.scope)
        if token:
            await service.revoke_token(token, request.app.state.redis)

    @get("/", summary="My archive", responses=problems(401, 403))
    async def profile(self, request: Request) -> member_schemas.Member:
        principal = current_principal(request)
        return await members.get_member(principal.id, principal)

    @get("/points", summary="My points", responses=problems(401, 403))
    async def balance(self, request: Request) -> point_schemas.Balance:
        """Available, pending, owed, expiring soon."""
        principal = current_principal(request)
        return await points.balance(principal.id, principal)

    @get("/points/entries", summary="My points history", responses=problems(400, 401, 403))
    async def entries(
        self,
        request: Request,
        kind: Annotated[str | None, QueryParameter(max_length=32)] = None,
        cursor: Annotated[str | None, QueryParameter(max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> point_schemas.EntryPage:
        principal = current_principal(request)
        return await points.statement(
            principal.id, principal, kind=kind, cursor=cursor, limit=limit
        )

    @get("/tier", summary="My tier and progress", responses=problems(401, 403))
    async def tier(self, request: Request) -> tier_schemas.MemberTier:
        principal = current_principal(request)
        return await tiers.status(principal.id, principal)

    @get("/rewards", summary="Rewards I may redeem", responses=problems(401, 403))
    async def catalog(self, request: Request) -> reward_schemas.MemberCatalog:
        principal = current_principal(request)
        return await eligibility.member_catalog(principal.id, principal)

    @post(
        "/redemptions",
        summary="Redeem a reward",
        responses={
            **replayed(reward_schemas.Redemption),
            **problems(400, 401, 403, 409, 422),
        },
    )
    async def redeem(
        self, request: Request, data: JSONBody[reward_schemas.RedemptionCreate]
    ) -> Response[reward_schemas.Redemption]:
        """As `POST /api/v1/members/{id}/redemptions`, for myself."""
        principal = current_principal(request)
        redemption, created = await redemptions.redeem(principal.id, data, principal)
        return Response(redemption, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get("/redemptions", summary="My redemptions", responses=problems(401, 403))
    async def redemptions(self, request: Request) -> list[reward_schemas.Redemption]:
        principal = current_principal(request)
        return await redemptions.member_redemptions(principal.id, principal)

    @post(
        "/redemptions/{redemption_id:uuid}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel my redemption before it is fulfilled",
        responses=problems(400, 401, 403, 404, 409),
    )
    async def cancel(
        self,
        request: Request,
        redemption_id: FromPath[UUID],
        data: JSONBody[reward_schemas.CancellationCreate],
    ) -> reward_schemas.Redemption:
        return await redemptions.cancel(redemption_id, data, current_principal(request))

    @get("/referrals", summary="My referral code, link and referrals", responses=problems(401, 403))
    async def my_referrals(self, request: Request) -> referral_schemas.MemberReferrals:
        principal = current_principal(request)
        return await referrals.member_referrals(principal.id, principal)

    @get("/messages", summary="My messages and offers", responses=problems(401, 403))
    async def messages(self, request: Request) -> list[schemas.Message]:
        """Newest first, each in the member's language: the one chosen (`language` in the
        contact preferences, or the portal's language switch), else this request's
        Accept-Language, else English. A message written in one language only (a reply from
        staff) is shown as written."""
        principal = current_principal(request)
        language = i18n.member_language(
            await members.language_of(principal.id), request.headers.get("accept-language")
        )
        return [
            schemas.Message(
                id=str(row["id"]),
                kind=row["kind"],
                title=row["title"],
                body=row["body"],
                created_at=row["created_at"].isoformat(),
            )
            for row in await events.inbox(principal.id, language)
        ]

    @post(
        "/contact-change",
        status_code=HTTP_202_ACCEPTED,
        summary="Change my phone or email: send a code to the new one",
        responses=problems(400, 401, 403, 409, 422, 429),
    )
    async def change_contact(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.ContactChangeCreate],
    ) -> schemas.Accepted:
        await service.start_contact_change(
            current_principal(request),
            data.field,
            data.value,
            redis=request.app.state.redis,
            settings=settings,
        )
        return schemas.Accepted(status="sent", detail="A code is on its way to the new address.")

    @post(
        "/contact-change/confirm",
        status_code=HTTP_200_OK,
        summary="Confirm the new phone or email with its code",
        responses=problems(400, 401, 403, 409, 429),
    )
    async def confirm_contact(
        self,
        request: Request,
        settings: NamedDependency[Settings],
        data: JSONBody[schemas.ContactChangeConfirmationCreate],
    ) -> member_schemas.Member:
        return await service.confirm_contact_change(
            current_principal(request), data.code, **code_context(request, settings)
        )

    @put(
        "/password",
        status_code=204,
        summary="Set my password",
        responses=problems(400, 401, 403, 422),
    )
    async def set_password(self, request: Request, data: JSONBody[schemas.PasswordUpdate]) -> None:
        await service.set_password(current_principal(request), data.password)

    @put(
        "/preferences",
        summary="My contact preferences and consents",
        responses=problems(400, 401, 403),
    )
    async def preferences(
        self, request: Request, data: JSONBody[member_schemas.ContactPreferences]
    ) -> member_schemas.Member:
        """Channels in order of preference and consent per channel, and optionally the
        `language` of my messages ("en" or "zh"; left out, the stored one stays). The server
        records when and how each changed consent was given (`at` and `method` sent here are
        ignored); an unchanged consent keeps its record."""
        return await service.save_preferences(
            current_principal(request),
            data.channels,
            {c.channel: c.granted for c in data.consents},
            method="member API",
            language=data.language,
        )

    @post(
        "/requests",
        status_code=HTTP_201_CREATED,
        summary="Send the company a request or complaint",
        responses=problems(400, 401, 403),
    )
    async def send_request(
        self, request: Request, data: JSONBody[schemas.ServiceRequestCreate]
    ) -> dict[str, str]:
        """It lands in the company's contact log, not with one person."""
        contact_id = await service.send_request(current_principal(request), data)
        return {"id": str(contact_id), "status": "open"}

    @get("/export", summary="Everything held about me (JSON)", responses=problems(401, 403))
    async def export(self, request: Request) -> dict[str, Any]:
        return await privacy.export_data(current_principal(request))

    @post(
        "/closure",
        status_code=HTTP_202_ACCEPTED,
        summary="Ask for my account to be closed",
        responses=problems(400, 401, 403, 409),
    )
    async def closure(
        self, request: Request, data: JSONBody[schemas.ClosureRequestCreate]
    ) -> schemas.Accepted:
        """An administrator handles the request; points and history are kept as the law
        requires, personal details are removed."""
        await privacy.request_closure(current_principal(request), data.reason)
        return schemas.Accepted(status="requested", detail="Your request is with us.")
