"""OpenAPI helpers: document the problem responses every endpoint can give."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi.datastructures import ResponseSpec

_DESCRIPTIONS = {
    400: "Malformed request or failed validation (problem details name the field)",
    401: "Not authenticated",
    403: "Authenticated but not allowed",
    404: "Not found",
    409: "Conflicts with existing data",
    422: "Breaks a business rule (problem details name the field)",
    429: "Rate limited; see Retry-After",
    503: "A backing service is unavailable",
}


class FieldError(msgspec.Struct):
    field: str | None
    reason: str
    source: str = "body"


class ProblemDetails(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details; `field` and `errors` name what was wrong with the input."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    field: str | None = None
    errors: list[FieldError] | None = None


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    specs: dict[int, Any] = {}
    for status in statuses:
        specs[status] = ResponseSpec(
            data_container=ProblemDetails,
            description=_DESCRIPTIONS[status],
            media_type="application/problem+json",
            generate_examples=False,
        )
    return specs
