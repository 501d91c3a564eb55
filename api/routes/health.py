"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api import metrics
from api.deps import engine
from api.security import Principal, reader
from db import migrate
from db.events import latest_seq

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: database reachable, schema current, event listener up",
    responses={503: {"description": "Not ready"}},
)
def readyz(request: Request) -> JSONResponse:
    # Open like /healthz (probes carry no credentials), so it says only ready or not and why.
    checks: dict[str, bool] = {"database": False, "schema": False, "listener": False}
    try:
        with engine(request).connect() as conn:
            conn.execute(text("SELECT 1"))
            checks["database"] = True
            checks["schema"] = migrate.current(conn) in migrate.heads()
    except Exception:
        pass
    checks["listener"] = bool(request.app.state.broadcaster.connected)
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
        headers=None if ready else {"Retry-After": "5"},
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus(request: Request, _: Principal = Depends(reader)) -> Response:
    with engine(request).connect() as conn:
        committed = latest_seq(conn)
    metrics.COMMITTED_SEQ.set(committed)
    metrics.EVENT_LAG.set(max(0, committed - request.app.state.broadcaster.last_seq))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
