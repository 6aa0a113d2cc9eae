"""OpenAPI helpers: document the problem responses every endpoint can give."""

from __future__ import annotations

import json
from typing import Any

import msgspec
from litestar._openapi.plugin import OpenAPIPlugin
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import OpenAPIRenderPlugin, YamlRenderPlugin

from loyalty.infrastructure.schemas import DECIMAL_PATTERN, Input

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
    """An endpoint's own problem responses (409, 422, 429, ...). The ones every operation can
    give (400, 401, 403, 404, 413, 503) are added to the document by `_problem_responses`."""
    specs: dict[int, Any] = {}
    for status in statuses:
        specs[status] = ResponseSpec(
            data_container=ProblemDetails,
            description=_DESCRIPTIONS[status],
            media_type="application/problem+json",
            generate_examples=False,
        )
    return specs


def replayed(data_container: Any) -> dict[int, ResponseSpec]:
    """What an idempotent POST answers besides its 201: 200 with the original result when
    sent again (nothing done twice), 409 when its key was used for a different request."""
    return {
        200: ResponseSpec(
            data_container=data_container,
            description="Sent before with the same key: the original result, nothing done again",
        ),
        **problems(409),
    }


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Request bodies refuse unknown fields (`forbid_unknown_fields`); say so in the schema
    (`additionalProperties: false`) so clients and fuzzers know extras are refused. Remembers
    the Struct behind each component title, so `finish_document` can give its fields
    msgspec's exact constraints."""

    def __init__(self) -> None:
        self.structs: dict[str, list[type]] = {}

    def to_openapi_schema(self, field_definition, schema_creator):  # type: ignore[override]
        schema = super().to_openapi_schema(field_definition, schema_creator)
        title = getattr(schema, "title", None)
        if title:
            known = self.structs.setdefault(title, [])
            if field_definition.type_ not in known:
                known.append(field_definition.type_)
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


# A decimal in a request body: a string like "12.50" or a JSON number, never NaN or
# infinity (loyalty.http.middleware.StrictJsonRequest and `Input` refuse anything else with 400).
DECIMAL_INPUT = {
    "anyOf": [{"type": "string", "pattern": DECIMAL_PATTERN}, {"type": "number"}],
    "description": "a decimal number, as a string (preferred) or a JSON number; finite",
}
_PROBLEM = {"$ref": "#/components/schemas/ProblemDetails"}


def _input_decimals(schema: Any) -> Any:
    if isinstance(schema, dict):
        if schema.get("type") == "string" and schema.get("format") == "decimal":
            return dict(DECIMAL_INPUT)
        return {key: _input_decimals(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_input_decimals(item) for item in schema]
    return schema


def _struct_of(name: str, title: str, structs: dict[str, list[type]]) -> type | None:
    """The Struct behind a component: its title is the Struct's name; when two Structs share
    it, Litestar prefixes the module ("rewards_schemas_VoucherImport")."""
    candidates = structs.get(title, [])
    if len(candidates) == 1:
        return candidates[0]
    for struct in candidates:
        if f"{struct.__module__}.{struct.__qualname__}".replace(".", "_").endswith(name):
            return struct
    return None


def _date_times(schema: Any) -> Any:
    """msgspec leaves `format` off datetimes; say RFC 3339 date-time, as Litestar does."""
    if isinstance(schema, dict):
        if schema == {"type": "string"}:
            return {"type": "string", "format": "date-time"}
        return {key: _date_times(value) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_date_times(item) for item in schema]
    return schema


def _exact_struct_schemas(document: dict[str, Any], structs: dict[str, list[type]]) -> None:
    """Litestar's generator loses constraints (a minimum of 0, item and dict-value bounds,
    bounds under `| None`); msgspec's own JSON schema is what decoding enforces. Fields that
    refer to other components keep Litestar's `$ref` (its component names)."""
    for name, component in document.get("components", {}).get("schemas", {}).items():
        struct = _struct_of(name, component.get("title", ""), structs)
        if struct is None or "properties" not in component:
            continue
        try:
            _, exact = msgspec.json.schema_components([struct])
        except (TypeError, ValueError):
            continue
        fields = exact.get(struct.__name__, {}).get("properties", {})
        is_input = isinstance(struct, type) and issubclass(struct, Input)
        for field, schema in fields.items():
            if field not in component["properties"] or "$ref" in json.dumps(schema):
                continue
            if '"date-time"' in json.dumps(component["properties"][field]):
                schema = _date_times(schema)
            component["properties"][field] = _input_decimals(schema) if is_input else schema


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[status],
        "content": {"application/problem+json": {"schema": _PROBLEM}},
    }


def _mentions_date_time(schema: Any, document: dict[str, Any], seen: set | None = None) -> bool:
    seen = set() if seen is None else seen
    if isinstance(schema, dict):
        if schema.get("format") == "date-time":
            return True
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            target = document.get("components", {}).get("schemas", {}).get(ref.rsplit("/", 1)[-1])
            if _mentions_date_time(target, document, seen):
                return True
        return any(_mentions_date_time(v, document, seen) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions_date_time(v, document, seen) for v in schema)
    return False


def _problem_responses(document: dict[str, Any]) -> None:
    """Every API operation documents the problem responses the app as a whole can give:
    400 for bad input (also replacing Litestar's generic application/json 400), 401 and 403
    unless public, 404 where the path names something, 413 for bodies, 503 when a backing
    service is down. Endpoint-specific ones (409, 422, 429) stay with the endpoints. The
    responses are listed in status order, wherever they were stated."""
    for path, item in document.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            wanted = [503]
            if operation.get("parameters") or operation.get("requestBody"):
                wanted.append(400)
            if path not in PUBLIC_PATHS:
                wanted += [401, 403]
            if "{" in path:
                wanted.append(404)
            if operation.get("requestBody"):
                wanted.append(413)
                if _mentions_date_time(operation["requestBody"], document):
                    wanted.append(422)  # an instant outside years 1-9999 in UTC
            for status in wanted:
                existing = responses.get(str(status), {}).get("content", {})
                if "application/problem+json" not in existing:
                    responses[str(status)] = _problem_response(status)
            operation["responses"] = dict(sorted(responses.items()))


NO_NUL = "^[^\\u0000]*$"


def _no_nul(schema: Any) -> None:
    """Text never contains NUL (refused with 400 in a body, path or query): every plain
    string schema says so with a pattern."""
    if isinstance(schema, dict):
        if schema.get("type") == "string" and not {"pattern", "format", "enum", "const"} & set(
            schema
        ):
            schema["pattern"] = NO_NUL
        if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
            names = schema.setdefault("propertyNames", {})  # a dict's keys are text too
            if not {"pattern", "format", "enum", "const"} & set(names):
                names["pattern"] = NO_NUL
        for value in schema.values():
            _no_nul(value)
    elif isinstance(schema, list):
        for item in schema:
            _no_nul(item)


def finish_document(app: Any, structs: StrictStructSchemaPlugin) -> None:
    """Build the served OpenAPI document once and complete it (exact field constraints,
    the problem responses every operation can give)."""
    document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
    _exact_struct_schemas(document, structs.structs)
    _problem_responses(document)
    for name, schema in document.get("components", {}).get("schemas", {}).items():
        if name not in ("ProblemDetails", "FieldError"):  # these may quote the bad input
            _no_nul(schema)
    _no_nul(document.get("paths", {}))


class CachedYamlRenderPlugin(YamlRenderPlugin):
    """The YAML document, rendered once: the schema does not change while the app runs, and
    PyYAML takes most of a second of CPU for it, which every anonymous GET would cost."""

    _rendered: bytes | None = None

    def render(self, request: Any, openapi_schema: dict[str, Any]) -> bytes:
        if self._rendered is None:
            self._rendered = super().render(request, openapi_schema)
        return self._rendered


def cache_yaml(plugins: list[OpenAPIRenderPlugin]) -> list[OpenAPIRenderPlugin]:
    """The render plugins with the YAML ones rendering once."""
    return [CachedYamlRenderPlugin() if type(p) is YamlRenderPlugin else p for p in plugins]
