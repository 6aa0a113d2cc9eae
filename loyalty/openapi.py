"""OpenAPI helpers: document the problem responses every endpoint can give."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.datastructures import ResponseSpec

_DESCRIPTIONS = {
    400: "Malformed request or failed validation (problem details name the field)",
    401: "Not authenticated",
    403: "Authenticated but not allowed",
    404: "Not found",
    409: "Conflicts with existing data",
    413: "The body is larger than the limit (1 MiB unless the endpoint says otherwise)",
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


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Request bodies refuse unknown fields (`forbid_unknown_fields`); say so in the schema
    (`additionalProperties: false`) so clients and fuzzers know extras are refused."""

    def to_openapi_schema(self, field_definition, schema_creator):  # type: ignore[override]
        schema = super().to_openapi_schema(field_definition, schema_creator)
        if getattr(field_definition.type_, "__struct_config__", None) is not None and (
            field_definition.type_.__struct_config__.forbid_unknown_fields
        ):
            schema.additional_properties = False
        return schema


# Endpoints anyone may call (sign-in, sign-up, health): no credentials needed.
PUBLIC_PATHS = (
    "/health",
    "/api/v1/auth/tokens",
    "/api/v1/me/sign-in",
    "/api/v1/me/sign-in/code",
    "/api/v1/me/sign-in/password",
    "/api/v1/me/sign-up",
    "/api/v1/me/sign-up/confirm",
)


def document_public_endpoints(app: Any) -> None:
    """The app-wide `bearer` requirement does not apply to PUBLIC_PATHS: say so
    (`security: [{}]`, "no credentials") in the document, built here once."""
    for path, item in (app.openapi_schema.paths or {}).items():
        if path in PUBLIC_PATHS:
            for method in ("get", "post"):
                operation = getattr(item, method, None)
                if operation is not None:
                    operation.security = [{}]
