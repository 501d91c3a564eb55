"""Signing in: the browser login page and session cookie, API tokens, signing out."""

from __future__ import annotations

import html
import math
import secrets
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from api import security
from api.deps import settings, transaction
from api.problems import ApiProblem
from api.schemas import Input, Me
from api.security import CSRF_COOKIE, SESSION_COOKIE, Principal, current
from db import auth
from db.auth import IssuedToken, TokenInfo
from db.errors import NotAuthenticated

router = APIRouter(tags=["auth"])
LOGIN_CSRF_COOKIE = "fleet_login_csrf"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Fleet availability</title>
<style>
 body {{ font-family: system-ui, sans-serif; background: #f4f6f8; margin: 0; }}
 main {{ max-width: 22rem; margin: 12vh auto; background: #fff; padding: 2rem;
        border-radius: 8px; box-shadow: 0 2px 8px #0002; }}
 label {{ display: block; margin-top: 1rem; font-weight: 600; }}
 input {{ width: 100%; box-sizing: border-box; font-size: 1.1rem; padding: .7rem;
          margin-top: .3rem; border: 1px solid #889; border-radius: 4px; }}
 button {{ margin-top: 1.5rem; width: 100%; font-size: 1.1rem; padding: .8rem;
           background: #0b5394; color: #fff; border: 0; border-radius: 4px; }}
 .error {{ color: #a00; margin-top: 1rem; }}
</style></head>
<body><main>
<h1>Fleet availability</h1>
<form method="post" action="/login">
 <input type="hidden" name="csrf" value="{csrf}">
 <input type="hidden" name="next" value="{next}">
 <label for="username">Username</label>
 <input id="username" name="username" autocomplete="username" required autofocus value="{username}">
 <label for="password">Password</label>
 <input id="password" name="password" type="password" autocomplete="current-password" required>
 <button type="submit">Sign in</button>
 {error}
</form>
</main></body></html>"""


def _safe_next(target: str | None) -> str:
    # Only paths on this site: "//evil.example" or "https://..." would be an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def _login_page(csrf: str, next_: str, username: str = "", error: str = "") -> str:
    return _PAGE.format(
        csrf=html.escape(csrf),
        next=html.escape(next_),
        username=html.escape(username),
        error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
    )


def _login_wait(request: Request, username: str) -> int:
    """Count a sign-in attempt; return 0, or the whole seconds to wait when throttled."""
    address = request.client.host if request.client else ""
    wait = request.app.state.login_throttle.take(username=username, address=address)
    return max(1, math.ceil(wait)) if wait else 0


def _limit_login(request: Request, username: str) -> None:
    wait = _login_wait(request, username)
    if wait:
        raise ApiProblem(
            429,
            "too many sign-in attempts",
            code="rate_limited",
            hint=f"try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(request: Request, next: str | None = None, ended: str | None = None) -> HTMLResponse:
    csrf = secrets.token_urlsafe(24)
    # A page whose session was revoked or ran out sends the user here with ended=1.
    note = "Your session ended; please sign in again." if ended else ""
    response = HTMLResponse(_login_page(csrf, _safe_next(next), error=note))
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        httponly=True,
        samesite="strict",
        secure=settings(request).cookie_secure,
        max_age=3600,
    )
    return response


@router.post("/login", include_in_schema=False)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=40)],
    password: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    target = _safe_next(next)
    if not expected or not security.same_text(csrf, expected):
        return HTMLResponse(
            _login_page(
                expected or secrets.token_urlsafe(24),
                target,
                username,
                "Your sign-in form expired; please try again.",
            ),
            status_code=403,
        )
    wait = _login_wait(request, username)
    if wait:
        # A person at the form gets the form back with a sentence, never a JSON document.
        return HTMLResponse(
            _login_page(expected, target, username, f"Too many attempts; try again in {wait} s."),
            status_code=429,
            headers={"Retry-After": str(wait)},
        )
    cfg = settings(request)
    try:
        with transaction(request) as conn:
            user = auth.authenticate(conn, username=username, password=password)
            issued = auth.issue_token(
                conn,
                user_id=user.id,
                kind="session",
                lifetime=timedelta(hours=cfg.session_hours),
                label=request.headers.get("user-agent", "")[:100],
            )
    except NotAuthenticated as exc:
        return HTMLResponse(_login_page(expected, target, username, exc.message), status_code=401)
    response = RedirectResponse(target, status_code=303)
    set_session_cookies(request, response, issued.token)
    return response


def set_session_cookies(request: Request, response: Response, session_token: str) -> None:
    """Set the signed session cookie and the CSRF cookie scripts echo in X-CSRF-Token."""
    cfg = settings(request)
    signer = request.app.state.signer
    age = int(cfg.session_hours * 3600)
    response.set_cookie(
        SESSION_COOKIE,
        signer.cookie_value(session_token),
        httponly=True,
        samesite="lax",
        secure=cfg.cookie_secure,
        max_age=age,
    )
    response.set_cookie(
        CSRF_COOKIE,
        signer.csrf_token(session_token),
        httponly=False,
        samesite="strict",
        secure=cfg.cookie_secure,
        max_age=age,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    # CSRF-checked (header or form field) so another site cannot sign staff out.
    raw = security.session_token(request)
    if raw is not None:
        security.require_csrf(request, request.headers.get(security.CSRF_HEADER) or csrf, raw)
        with transaction(request) as conn:
            try:
                token_id = auth.resolve_token(conn, token=raw, kind="session").token_id
            except NotAuthenticated:
                token_id = None
            if token_id is not None:
                auth.revoke_token(conn, token_id=token_id)
        if token_id is not None:
            request.app.state.credentials.end(token_id, "you signed out")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


class TokenRequest(Input):
    username: str = Field(min_length=1, max_length=40)
    password: str = Field(min_length=1, max_length=200)
    label: str = Field(default="", max_length=100, description="Which device or script.")
    days: float | None = Field(default=None, gt=0, le=366, description="Lifetime in days.")


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    token: TokenInfo


@router.post(
    "/api/auth/token",
    response_model=TokenResponse,
    summary="Exchange a username and password for a bearer token",
    responses={401: {"description": "Wrong username or password"}},
)
def issue_token(request: Request, body: TokenRequest) -> TokenResponse:
    _limit_login(request, body.username)
    days = body.days or settings(request).token_days
    with transaction(request) as conn:
        user = auth.authenticate(conn, username=body.username, password=body.password)
        issued: IssuedToken = auth.issue_token(
            conn, user_id=user.id, kind="api", lifetime=timedelta(days=days), label=body.label
        )
    return TokenResponse(access_token=issued.token, token=issued.info)


@router.get("/api/auth/me", response_model=Me, summary="Who am I (and my CSRF token)")
def me(request: Request, principal: Principal = Depends(current)) -> Me:
    csrf = request.cookies.get(CSRF_COOKIE) if principal.via == "session" else None
    return Me(**principal.user.model_dump(), csrf_token=csrf)


@router.get("/api/auth/tokens", response_model=list[TokenInfo], summary="My live tokens")
def my_tokens(request: Request, principal: Principal = Depends(current)) -> list[TokenInfo]:
    with transaction(request) as conn:
        return auth.list_tokens(conn, user_id=principal.id)


@router.delete("/api/auth/tokens/{token_id}", status_code=204, summary="Revoke one of my tokens")
def revoke(request: Request, token_id: int, principal: Principal = Depends(current)) -> Response:
    with transaction(request) as conn:
        auth.revoke_token(conn, token_id=token_id, user_id=principal.id)
    # Streams and pages it opened here end at once; other processes end theirs within seconds.
    request.app.state.credentials.end(token_id, "the token was revoked")
    return Response(status_code=204)
