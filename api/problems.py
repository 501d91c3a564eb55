"""RFC 9457 problem documents: every error a client sees, with the status code that fits."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from tornado.web import HTTPError as TornadoHTTPError

from db import errors

log = logging.getLogger("fleet.api")

PROBLEM_TYPE = "https://fleet.example/problems/"
MEDIA_TYPE = "application/problem+json"

STATUS_FOR: dict[type[errors.FleetError], int] = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.BookingConflict: 409,
    errors.StaleVersion: 409,
    errors.InvalidTransition: 409,
    errors.RollbackRefused: 409,
    errors.HoldExpired: 409,
    errors.HoldTaken: 409,
    errors.HoldConverted: 409,
    errors.NotAvailable: 409,
    errors.IdempotencyMismatch: 422,
    errors.NotAuthenticated: 401,
    errors.Forbidden: 403,
}

TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Not allowed for your role",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class FieldProblem(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Where: `period.start`, `limit`, `If-Match`.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document: what went wrong, which field, and how to fix it.

    Some problems carry more members (a stale version's current state, a conflict's hold).
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[PROBLEM_TYPE + "invalid_input"])
    title: str = Field(examples=["Invalid input"])
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="What is wrong, in words for the person at the counter.")
    code: str = Field(description="A stable, machine-readable name of the problem.")
    field: str | None = Field(default=None, description="The request field at fault.")
    hint: str | None = Field(default=None, description="How to fix it.")
    instance: str | None = Field(default=None, description="The path that was asked for.")
    request_id: str | None = Field(default=None, description="Quote it when reporting a bug.")
    errors: list[FieldProblem] | None = Field(default=None, description="Every invalid field.")


class ApiProblem(Exception):
    """Raise from a route or dependency to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        code: str | None = None,
        field: str | None = None,
        hint: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        title: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.title = title
        self.status = status
        self.detail = detail
        self.code = code or TITLES.get(status, "error").lower().replace(" ", "_")
        self.field = field
        self.hint = hint
        self.headers = headers or {}
        self.extra = extra or {}


def problem_response(
    status: int,
    detail: str,
    *,
    code: str,
    request: Request | None = None,
    field: str | None = None,
    hint: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    title: str | None = None,
) -> JSONResponse:
    """Build the problem+json response."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if field:
        body["field"] = field
    if hint:
        body["hint"] = hint
    if request is not None:
        body["instance"] = request.url.path
        rid = getattr(request.state, "request_id", None)
        if rid:
            body["request_id"] = rid
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=MEDIA_TYPE)


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "period", "start") -> "period.start"; the location kind says where, not what.
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or (str(loc[0]) if loc else "request")


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem document."""

    @app.exception_handler(errors.FleetError)
    async def fleet_error(request: Request, exc: errors.FleetError) -> JSONResponse:
        status = STATUS_FOR.get(type(exc), 400)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return problem_response(
            status,
            exc.message,
            code=exc.code,
            request=request,
            field=exc.field,
            hint=exc.hint,
            headers=headers,
            extra=exc.details,
        )

    @app.exception_handler(ApiProblem)
    async def api_problem(request: Request, exc: ApiProblem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            code=exc.code,
            request=request,
            field=exc.field,
            hint=exc.hint,
            headers=exc.headers,
            extra=exc.extra,
            title=exc.title,
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"field": _field_name(tuple(e.get("loc", ()))), "message": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        first = problems[0] if problems else {"field": "request", "message": "invalid"}
        return problem_response(
            422,
            f"{first['field']}: {first['message']}",
            code="invalid_input",
            request=request,
            field=first["field"],
            hint="fix the named field and send the request again",
            extra={"errors": problems},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        code = TITLES.get(exc.status_code, "error").lower().replace(" ", "_")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first route matching the path; a path served by
            # several routes (GET and PATCH /api/preferences) allows all of theirs.
            headers["Allow"] = ", ".join(sorted(allowed_methods(request)))
        return problem_response(
            exc.status_code, detail, code=code, request=request, headers=headers
        )

    @app.exception_handler(TornadoHTTPError)
    async def tornado_error(request: Request, exc: TornadoHTTPError) -> JSONResponse:
        # /components/ (api/routes/components.py) resolves files with Panel's Tornado
        # handler code, which raises Tornado's HTTP errors: they keep their status.
        status = exc.status_code if 400 <= exc.status_code < 600 else 500
        detail = exc.log_message or exc.reason or TITLES.get(status, "error")
        # Tornado's reason ("Forbidden"), not ours: a 403 here is about the file, not a role.
        title = exc.reason or HTTPStatus(status).phrase
        code = title.lower().replace(" ", "_")
        return problem_response(status, detail, code=code, request=request, title=title)

    @app.exception_handler(OperationalError)
    async def db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.orig.__class__.__name__ if exc.orig else exc)
        return problem_response(
            503,
            "the database is not reachable right now",
            code="database_unavailable",
            request=request,
            hint="try again in a few seconds",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(DataError)
    async def bad_value(request: Request, exc: DataError) -> JSONResponse:
        # Values PostgreSQL cannot store (NUL characters, out-of-range numbers) are the
        # input's fault: say so instead of failing with a 500.
        log.info("rejected value: %s", _first_line(exc.orig))
        return problem_response(
            422,
            f"a value cannot be stored: {_first_line(exc.orig)}",
            code="invalid_input",
            request=request,
            hint="remove control characters and keep numbers within range",
        )

    @app.exception_handler(IntegrityError)
    async def integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # The schema is the last line of defence; routes validate references first, so this
        # is a race (the row went away meanwhile) or a reference no check covered.
        diag = getattr(exc.orig, "diag", None)
        constraint = getattr(diag, "constraint_name", None) or "a constraint"
        sqlstate = getattr(exc.orig, "sqlstate", "")
        log.warning("integrity error on %s (%s)", constraint, sqlstate)
        if sqlstate == "23503":
            return problem_response(
                422,
                f"a referenced record does not exist ({constraint})",
                code="unknown_reference",
                request=request,
                hint="check the ids in the request",
            )
        return problem_response(
            409,
            f"the change conflicts with existing data ({constraint})",
            code="conflict",
            request=request,
            hint="reload and try again",
        )

    @app.exception_handler(DBAPIError)
    async def db_error(request: Request, exc: DBAPIError) -> JSONResponse:
        # Bad input is validated before SQL; reaching here is our bug, so log it, hide it.
        log.exception("database error")
        return problem_response(500, "internal error", code="internal", request=request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem_response(500, "internal error", code="internal", request=request)


def allowed_methods(request: Request) -> set[str]:
    """Return the methods of every route whose path matches the request's."""
    methods: set[str] = set()
    path = request.scope["path"]
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= route.methods
    return methods


def _first_line(err: object) -> str:
    return str(err).strip().splitlines()[0][:200] if err else "invalid value"
