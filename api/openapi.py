"""The OpenAPI document: the API's own paths, how each operation authenticates, its problems."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from api import security
from api.problems import MEDIA_TYPE, Problem

API_PATHS = ("/api/", "/healthz", "/readyz", "/metrics")
WRITES = frozenset({"post", "put", "patch", "delete"})
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}

SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `POST /api/auth/token`, sent as "
        "`Authorization: Bearer <token>`.",
    },
    "session": {
        "type": "apiKey",
        "in": "cookie",
        "name": security.SESSION_COOKIE,
        "description": "The browser session cookie set by signing in at `/login`.",
    },
    "csrf": {
        "type": "apiKey",
        "in": "header",
        "name": security.CSRF_HEADER,
        "description": f"With the session cookie, writes also need the `{security.CSRF_COOKIE}` "
        "cookie's value in this header.",
    },
    "access_token": {
        "type": "apiKey",
        "in": "query",
        "name": "access_token",
        "description": "A bearer token in the query, for EventSource clients (they cannot set "
        "headers).",
    },
}
READ_SECURITY = [{"bearer": []}, {"session": []}]
WRITE_SECURITY = [{"bearer": []}, {"session": [], "csrf": []}]
# Routes that authenticate in their own body rather than through a dependency (and, as
# streams, are neither rate-limited nor shed).
SELF_AUTHENTICATED = {
    "/api/availability/events": [{"bearer": []}, {"access_token": []}, {"session": []}],
}
# POSTs that only read (a search's criteria do not fit in a query string): nothing to conflict.
READING_POSTS = frozenset({"/api/availability/search"})

# What each problem status means when the route says nothing more specific.
MEANING = {
    400: "The body is not JSON, or a header is malformed (the problem says which)",
    401: "No valid credentials: sign in, or send a bearer token",
    403: "Your role may not do this, or a signed-in browser's write lacks its CSRF token",
    404: "Nothing has the id given in the path or a query parameter",
    409: "Conflicts with the current state: reload and try again",
    422: "Invalid input: the problem names the field and says how to fix it",
    429: "Too many requests: wait the seconds in Retry-After",
    503: "The database is unreachable or the server is busy: retry after Retry-After seconds",
}


def build(app: FastAPI) -> dict[str, Any]:
    """Return the app's OpenAPI document, built once: REST paths, security, problem responses."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    # bokeh-fastapi registers pages as API routes (some at startup); they are HTML pages,
    # not part of the REST API, so the document is built from the API's own paths only.
    for route in app.routes:
        if isinstance(route, APIRoute) and not route.path.startswith(API_PATHS):
            route.include_in_schema = False
    document = FastAPI.openapi(app)
    components = document.setdefault("components", {})
    components["securitySchemes"] = SCHEMES
    schemas = components.setdefault("schemas", {})
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    # Routers are included as views of their routes (FastAPI 0.150): walk those views.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        item = document["paths"].get(route.path_format or "", {})
        for method in route.methods or ():
            op = item.get(method.lower())
            if op is not None:
                _describe(op, route, method.lower())
                for parameter in op.get("parameters", ()):
                    _without_null(parameter)
    # FastAPI's own validation error shapes are never sent: every error is a Problem.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = document
    return document


def _describe(op: dict[str, Any], route: RouteContext, method: str) -> None:
    """Set the operation's security and the problem responses it can answer."""
    authenticated = route.path in SELF_AUTHENTICATED or _depends_on(
        route.dependant, security.current
    )
    statuses = {503}
    if authenticated:
        op["security"] = SELF_AUTHENTICATED.get(
            route.path, WRITE_SECURITY if method in WRITES else READ_SECURITY
        )
        statuses |= {401, 403} if route.path in SELF_AUTHENTICATED else {401, 403, 429}
    if route.path == "/api/auth/token":
        statuses.add(429)  # sign-in attempts are throttled per username and address
    if route.dependant.path_params or any(
        # A filter by id (?location_id=) names something that may not exist: 404 naming it.
        p.alias.endswith("_id")
        for p in route.dependant.query_params
    ):
        statuses.add(404)
    if route.body_field is not None:
        statuses |= {400, 422}  # 400: the body is not JSON at all
    if route.dependant.query_params or route.dependant.path_params:
        statuses.add(422)
    if route.dependant.header_params:
        statuses.add(422)
    if authenticated and method in WRITES - {"delete"} and route.path not in READING_POSTS:
        # Any write may lose a race for a row (the database's constraints say 409).
        statuses.add(409)
    responses = op.setdefault("responses", {})
    statuses |= {int(code) for code in responses if code[0] in "45"}
    for status in sorted(statuses):
        response = responses.setdefault(str(status), {})
        content = response.get("content", {})
        if _is_fastapi_default(content):
            content = {}
            response["description"] = MEANING[status]
        response.setdefault("description", MEANING.get(status, "Problem"))
        content[MEDIA_TYPE] = {"schema": PROBLEM_REF}
        response["content"] = content
        if status in (429, 503):
            response.setdefault("headers", {}).update(RETRY_AFTER)
    if 401 in statuses:
        responses["401"].setdefault("headers", {})["WWW-Authenticate"] = {
            "description": "`Bearer`: how to authenticate.",
            "schema": {"type": "string"},
        }
    op["responses"] = dict(sorted(responses.items()))


def _without_null(parameter: dict[str, Any]) -> None:
    """Describe an optional parameter by its value alone: leaving it out is how to omit it."""
    # FastAPI writes `x: int | None = None` as anyOf [integer, null]; a query string or header
    # cannot carry a JSON null, so clients (and schemathesis) would send the text "null".
    schema = parameter.get("schema", {})
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if parameter.get("required") or len(branches) != 1 or len(schema["anyOf"]) != 2:
        return
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    parameter["schema"] = {**branches[0], **rest}


def _is_fastapi_default(content: dict[str, Any]) -> bool:
    schema = content.get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").endswith("/HTTPValidationError")


def _depends_on(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call for d in _walk(dependant))


def _walk(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _walk(sub)
