"""Marketing API: segments and value groups, offers with approval and sending, results,
the monthly movement report, and the unsubscribe link that needs no sign-in."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, MediaType, Request, Response, get, post, put
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from loyalty.auth import CurrentPrincipal, requires
from loyalty.http.openapi import problems
from loyalty.http.params import PageLimit, PageOffset
from loyalty.http.responses import csv_download
from loyalty.http.routes import integration_only
from loyalty.infrastructure.schemas import MONTH_PATTERN
from loyalty.marketing import (
    offer_results,
    reports,
    schemas,
    segment_facts,
    segments,
    service,
    unsubscribe,
)
from loyalty.workflows import movement_actions


class SegmentController(Controller):
    path = "/api/v1/segments"
    tags = ["marketing"]
    guards = [requires("segments:manage")]

    @get(
        "/",
        summary="Saved segments",
    )
    async def list_segments(self) -> list[schemas.Segment]:
        """Every saved segment with how many members it selects now."""
        return await segments.list_segments()

    @post(
        "/",
        summary="Save a segment",
        responses=problems(422),
    )
    async def create_segment(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.SegmentCreate]
    ) -> schemas.Segment:
        """A named filter: tiers, spend and purchases in a window, days since the last
        purchase, available points, referrals made, birthday months, regions, tags, consent
        per channel, assigned reps or departments, value groups, lifecycle stages. Every
        condition given must hold."""
        return await segments.create(data, principal)

    @post(
        "/count",
        status_code=HTTP_200_OK,
        summary="Count the members a filter selects",
        responses=problems(422),
    )
    async def count(
        self,
        data: JSONBody[schemas.SegmentFilter],
        breakdown: Annotated[bool, QueryParameter()] = False,
    ) -> schemas.SegmentCount:
        """For a filter being edited: one SQL statement, nothing saved. With
        `?breakdown=true`, also the members by tier, and how many are reachable by `email`,
        by `sms` (preferred, consented, with an address) and by the portal inbox alone
        (`portal_only`): counts only, never who. Counted from the segment facts, rebuilt
        every 5 minutes, when they can answer the filter (`as_of`: when they were built);
        otherwise from the live tables (no `as_of`)."""
        return await segment_facts.count(data, breakdown)

    @get(
        "/value-groups",
        summary="Members by value: valuable, rising, declining, at risk",
    )
    async def value_groups(
        self, window_days: Annotated[int, QueryParameter(ge=30, le=1095)] = 365
    ) -> schemas.ValueGroups:
        """An RFM score from each member's recency, frequency and spend in the window, in
        the order of the pyramid (top first). Members with no purchase are at risk."""
        return await segments.value_groups(window_days)

    @get(
        "/value-groups.svg",
        summary="The value groups as a pyramid chart (SVG)",
        media_type="image/svg+xml",
    )
    async def value_pyramid(
        self, window_days: Annotated[int, QueryParameter(ge=30, le=1095)] = 365
    ) -> str:
        return segments.pyramid_svg(await segments.value_groups(window_days))

    @get(
        "/{segment_id:uuid}",
        summary="One segment",
    )
    async def get_segment(self, segment_id: FromPath[UUID]) -> schemas.Segment:
        return await segments.get(segment_id)

    @put(
        "/{segment_id:uuid}",
        summary="Change a segment",
        responses=problems(422),
    )
    async def update_segment(
        self,
        principal: CurrentPrincipal,
        segment_id: FromPath[UUID],
        data: JSONBody[schemas.SegmentUpdate],
    ) -> schemas.Segment:
        """Only the fields sent change; offers already sent keep their snapshot."""
        return await segments.update(segment_id, data, principal)


class OfferController(Controller):
    path = "/api/v1/offers"
    tags = ["marketing"]

    @get(
        "/",
        summary="Offers, newest first",
        guards=[requires("offers:manage")],
    )
    async def list_offers(
        self,
        status: Annotated[str | None, QueryParameter(max_length=16)] = None,
        limit: PageLimit = 50,
        offset: PageOffset = 0,
    ) -> list[schemas.Offer]:
        return await service.list_offers(status, limit, offset)

    @post(
        "/",
        summary="Write an offer (a draft)",
        responses=problems(422),
        guards=[requires("offers:manage")],
    )
    async def create_offer(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.OfferCreate]
    ) -> schemas.Offer:
        """Title and body in English and Chinese, validity, target (tiers and/or a segment)
        and an optional benefit: `voucher` (codes imported into the offer's pool, one per
        member), `bonus_points` (purchases inside the validity earn `bonus_multiplier` x
        points, for the offer's audience only). With `auto_kind` (birthday, welcome,
        winback) it is a template the worker sends every month to members who newly
        qualify. A draft is sent only after approval by a manager of marketing."""
        return await service.create_offer(data, principal)

    @get(
        "/{offer_id:uuid}",
        summary="One offer",
        guards=[requires("offers:manage")],
    )
    async def get_offer(self, offer_id: FromPath[UUID]) -> schemas.Offer:
        return await service.get_offer(offer_id)

    @put(
        "/{offer_id:uuid}",
        summary="Change a draft offer",
        responses=problems(409, 422),
        guards=[requires("offers:manage")],
    )
    async def update_offer(
        self,
        principal: CurrentPrincipal,
        offer_id: FromPath[UUID],
        data: JSONBody[schemas.OfferUpdate],
    ) -> schemas.Offer:
        """Only the fields sent change; approved or sent offers cannot change (409)."""
        return await service.update_offer(offer_id, data, principal)

    @post(
        "/{offer_id:uuid}/submit",
        status_code=HTTP_200_OK,
        summary="Submit a draft offer for approval",
        responses=problems(409),
        guards=[requires("offers:manage")],
    )
    async def submit(self, principal: CurrentPrincipal, offer_id: FromPath[UUID]) -> schemas.Offer:
        """The draft awaits approval (`submitted`) and can no longer change until a reviewer
        approves it or sends it back."""
        return await service.submit(offer_id, principal)

    @post(
        "/{offer_id:uuid}/send-back",
        status_code=HTTP_200_OK,
        summary="Send a submitted offer back to its author with a comment",
        responses=problems(409, 422),
        guards=[requires("offers:approve")],
    )
    async def send_back(
        self,
        principal: CurrentPrincipal,
        offer_id: FromPath[UUID],
        data: JSONBody[schemas.OfferSendBack],
    ) -> schemas.Offer:
        """The offer is a draft again, with the reviewer's `comment` (`review_comment`)."""
        return await service.send_back(offer_id, data, principal)

    @post(
        "/{offer_id:uuid}/approve",
        status_code=HTTP_200_OK,
        summary="Approve an offer for sending",
        responses=problems(403, 409),
        guards=[requires("offers:approve")],
    )
    async def approve(self, principal: CurrentPrincipal, offer_id: FromPath[UUID]) -> schemas.Offer:
        """Managers of marketing (role manager, department marketing) and admins, never the
        offer's author (403). A draft or submitted offer whose validity has ended, that
        reaches no member, or a voucher offer with an empty pool is refused (409, the reason
        in `detail`)."""
        return await service.approve(offer_id, principal)

    @post(
        "/{offer_id:uuid}/cancel",
        status_code=HTTP_200_OK,
        summary="Cancel an offer that was not sent",
        responses=problems(409),
        guards=[requires("offers:manage")],
    )
    async def cancel(self, principal: CurrentPrincipal, offer_id: FromPath[UUID]) -> schemas.Offer:
        return await service.cancel(offer_id, principal)

    @post(
        "/{offer_id:uuid}/send",
        status_code=HTTP_202_ACCEPTED,
        summary="Send an approved offer",
        responses=problems(409),
        guards=[requires("offers:manage")],
    )
    async def send(self, request: Request, offer_id: FromPath[UUID]) -> schemas.SendResult:
        """Queues the send job: it snapshots the audience, then delivers in batches through
        each member's preferred channel that has consent (email, SMS), and always to the
        portal inbox. Each member receives the offer once, however often this is called;
        the frequency cap holds back email and SMS (the inbox still gets it)."""
        return await service.request_send(offer_id, request.app.state.redis)

    @get(
        "/{offer_id:uuid}/results",
        summary="An offer's results",
        guards=[requires("marketing:report")],
    )
    async def results(self, offer_id: FromPath[UUID]) -> schemas.OfferResults:
        """Audience, delivered per channel, failed (and waiting for a retry), capped,
        opened in the portal, redeemed or used, and the points the offer added."""
        return await offer_results.results(offer_id)

    @post(
        "/{offer_id:uuid}/vouchers",
        status_code=HTTP_200_OK,
        summary="Import voucher codes into an offer's pool",
        responses=problems(422),
        guards=[requires("offers:manage")],
    )
    async def import_vouchers(
        self, offer_id: FromPath[UUID], data: JSONBody[schemas.VoucherImportCreate]
    ) -> schemas.VoucherImportResult:
        """Up to 10,000 a call; codes already there are skipped. Each delivered member takes
        one; members beyond the pool get the message without a code."""
        return await service.import_vouchers(offer_id, data)

    @post(
        "/{offer_id:uuid}/vouchers/use",
        status_code=HTTP_200_OK,
        summary="Record a voucher code as used",
        responses=problems(409),
        guards=[requires("members:write")],
        opt=integration_only("tills and the online shop report a code used at checkout"),
    )
    async def use_voucher(
        self, offer_id: FromPath[UUID], data: JSONBody[schemas.VoucherUseCreate]
    ) -> dict[str, str]:
        await service.use_voucher(offer_id, data.code)
        return {"status": "used"}


class MarketingSettingsController(Controller):
    path = "/api/v1/marketing-settings"
    tags = ["marketing"]

    @get("/", summary="Frequency cap, retries, churn windows", guards=[requires("offers:manage")])
    async def get_settings(self) -> schemas.MarketingSettings:
        return await service.get_settings_row()

    @put(
        "/",
        summary="Change the marketing settings",
        responses=problems(422),
        guards=[requires("offers:approve")],
    )
    async def put_settings(
        self, principal: CurrentPrincipal, data: JSONBody[schemas.MarketingSettingsUpdate]
    ) -> schemas.MarketingSettings:
        """`frequency_cap` marketing messages (email, SMS) per member in `cap_days`;
        `max_attempts` and `retry_seconds` (doubling) for failed deliveries; `churn_days`
        (lost), `at_risk_days` (win-back) and `falling_ratio` for the movement report."""
        return await service.update_settings(data, principal)


class MovementReportController(Controller):
    path = "/api/v1/reports/movement"
    tags = ["marketing"]
    guards = [requires("marketing:report")]

    @get(
        "/{month:str}",
        summary="The monthly movement report",
        responses=problems(422),
    )
    async def report(
        self, month: Annotated[str, PathParameter(pattern=MONTH_PATTERN)]
    ) -> schemas.MovementReport:
        """For month `YYYY-MM`: members who moved up or down a tier, valuable members whose
        spend is falling (below `falling_ratio` of their own average over the previous
        three months), members lost (their churn window ran out this month) and members won
        back (bought again after a gap of at least the churn window); counted by department
        and by rep, each member linked to their brief."""
        return await reports.movement(month)

    @get(
        "/{month:str}/csv",
        summary="The monthly movement report as CSV",
        responses=problems(422),
        media_type="text/csv",
    )
    async def report_csv(
        self, month: Annotated[str, PathParameter(pattern=MONTH_PATTERN)]
    ) -> Response[str]:
        report = await reports.movement(month)
        return csv_download(reports.to_csv(report), f"movement-{month}.csv")

    @post(
        "/{month:str}/segment",
        status_code=HTTP_200_OK,
        summary="A segment of the month's declining valuable members",
        responses=problems(422),
        guards=[requires("segments:manage")],
    )
    async def declining_segment(
        self,
        principal: CurrentPrincipal,
        month: Annotated[str, PathParameter(pattern=MONTH_PATTERN)],
    ) -> movement_actions.SegmentAction:
        """Members above the lowest tier who spent less or moved down a tier in the month,
        or bought nothing for `at_risk_days` (not yet `churn_days`): the segment
        "Declining valuable members YYYY-MM", made once for the month, each member added
        once however often this is called (`added`: new by this call)."""
        return await movement_actions.declining_segment(month, principal)

    @post(
        "/{month:str}/follow-ups",
        status_code=HTTP_200_OK,
        summary="Follow-up tasks for the reps of the month's declining valuable members",
        responses=problems(422),
    )
    async def declining_follow_ups(
        self,
        principal: CurrentPrincipal,
        month: Annotated[str, PathParameter(pattern=MONTH_PATTERN)],
        data: JSONBody[movement_actions.FollowUpActionCreate],
    ) -> movement_actions.FollowUpAction:
        """Each member's rep gets a task ("valuable member declining: call") due in `days`
        (1-60, 7), once a month per member: a task closed by a contact is not made again
        that month; members without a rep get none (`created`: tasks made by this call)."""
        return await movement_actions.declining_follow_ups(month, data.days, principal)


UNSUBSCRIBED_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Unsubscribed</title></head><body><main><h1>{title}</h1><p>{text}</p></main></body></html>"""


class UnsubscribeController(Controller):
    path = "/unsubscribe"
    tags = ["marketing"]
    include_in_schema = False

    @get("/{token:str}", media_type=MediaType.HTML)
    async def unsubscribe(self, token: FromPath[str]) -> Response[str]:
        """The link in every offer: withdraws the channel's consent, no sign-in needed."""
        done = await unsubscribe.withdraw_consent(token)
        if done is None:
            page = UNSUBSCRIBED_PAGE.format(
                title="This link is not valid", text="Please use the link from the message."
            )
            return Response(page, status_code=404, media_type=MediaType.HTML)
        channel = "emails" if done == "email" else "text messages"
        page = UNSUBSCRIBED_PAGE.format(
            title="You are unsubscribed / 已退订",
            text=f"You will receive no more offers by {channel}. 我们将不再向您发送此类优惠信息。"
            " Offers still appear in your member portal.",
        )
        return Response(page, media_type=MediaType.HTML)
