"""Problem details, request ids, unknown routes, health and the OpenAPI document."""

from __future__ import annotations

PROBLEM = "application/problem+json"


async def test_malformed_json_is_a_problem_naming_the_body(client, bearer):
    headers = await bearer("admin")
    response = await client.post(
        "/api/v1/staff",
        content=b'{"username": "x",',
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 400 and body["title"] == "Validation failed"
    assert "Traceback" not in response.text


async def test_wrong_type_names_the_field(client, bearer):
    headers = await bearer("admin")
    response = await client.post(
        "/api/v1/staff", json={"username": 42, "role": "rep"}, headers=headers
    )
    assert response.status_code == 400
    body = response.json()
    assert body["field"] == "username"
    assert "str" in body["errors"][0]["reason"]


async def test_unknown_field_is_refused_by_name(client, bearer):
    headers = await bearer("admin")
    response = await client.post(
        "/api/v1/staff",
        json={"username": "newrep", "role": "rep", "is_superuser": True},
        headers=headers,
    )
    assert response.status_code == 400
    assert response.json()["field"] == "is_superuser"
    listing = await client.get("/api/v1/staff", headers=headers)
    assert "newrep" not in {s["username"] for s in listing.json()}


async def test_unknown_route_is_a_404_problem(client):
    response = await client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["detail"] == "nothing at /api/v1/nothing-here"


async def test_wrong_method_is_a_405_problem(client):
    response = await client.put("/health")
    assert response.status_code == 405
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_every_response_carries_a_request_id(client):
    response = await client.get("/health")
    assert len(response.headers["x-request-id"]) >= 8
    kept = await client.get("/health", headers={"x-request-id": "pos-12345678"})
    assert kept.headers["x-request-id"] == "pos-12345678"
    unsafe = await client.get("/health", headers={"x-request-id": "<script>"})
    assert unsafe.headers["x-request-id"] != "<script>"


async def test_health_reports_both_services(client):
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


async def test_openapi_document_lists_endpoints_with_summaries_and_problems(client):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    create = paths["/api/v1/staff"]["post"]
    assert create["summary"] == "Create a staff user"
    assert {"401", "403", "409"} <= set(create["responses"])
    assert "/console/login" not in paths


async def test_options_lists_every_method_of_the_path(client):
    members = await client.options("/api/v1/members")
    assert members.headers["allow"] == "GET, OPTIONS, POST"
    settings = await client.options("/api/v1/tier-settings")
    assert settings.headers["allow"] == "GET, OPTIONS, PUT"


async def test_bodies_are_read_strictly(client, bearer):
    headers = await bearer("admin")
    cases = [
        ({"unassigned": 0}, "unassigned"),  # not a boolean
        ({"spend_min": "NaN"}, "spend_min"),  # decimals are finite
        ({"spend_min": " 1_0"}, "spend_min"),  # and written like 12.50
        ({"tags": ["a\u0000b"]}, "tags[0]"),  # text never holds NUL
    ]
    for body, field in cases:
        response = await client.post("/api/v1/segments/count", json=body, headers=headers)
        assert response.status_code == 400, body
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["field"] == field, response.json()
    fine = {"window_days": 30.0, "spend_min": "10.50", "points_min": 0}  # 30.0 is an integer
    assert (await client.post("/api/v1/segments/count", json=fine, headers=headers)).is_success
    nul_query = await client.get("/api/v1/members?q=a%00b", headers=headers)
    assert nul_query.status_code == 400


async def test_openapi_document_states_the_real_constraints(client):
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    points_max = schemas["SegmentFilter"]["properties"]["points_max"]["anyOf"][0]
    assert points_max["minimum"] == 0  # Litestar's own generator dropped a minimum of 0
    tags = schemas["MemberUpdate"]["properties"]["tags"]["items"]
    assert tags["minLength"] == 1
    decimal = schemas["EarningRulesUpdate"]["properties"]["points_per_unit"]["anyOf"][0]
    assert decimal["type"] == "string" and "pattern" in decimal
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path.startswith("/api/") and method in ("get", "post", "put", "patch", "delete"):
                problem = operation["responses"]["503"]["content"]
                assert PROBLEM in problem, (method, path)
