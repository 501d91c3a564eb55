"""Security headers on every response: what a browser may load, frame, sniff and send on.

And how long it may keep our static assets (`cache_policy`).

Pages (HTML) get a Content-Security-Policy as strict as Panel and Bokeh allow; everything
else (JSON, problems, files) gets one that allows nothing at all, so a response rendered as a
document by mistake can run nothing. docs/architecture.md says what each directive permits
and why.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Nothing to load, run or frame: JSON and problems, which no browser should render as a page.
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def page_policy(tile_origins: list[str]) -> str:
    """The policy of our HTML pages (dashboard, sign-in, counter app).

    Bokeh renders each page from an inline bootstrap script and builds JavaScript components
    and Panel's ESM modules with `new Function` and blob: imports (fetched first, hence blob:
    in connect-src), so scripts need 'unsafe-inline', 'unsafe-eval' and blob: (from our own
    origin only: no other host may supply code); without either no page renders. Bokeh and
    Panel set styles inline on every element. Map tiles are images from the configured tile
    server only.
    """
    images = " ".join(["'self'", "data:", "blob:", *tile_origins])
    directives = [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
        "style-src 'self' 'unsafe-inline'",
        f"img-src {images}",
        "font-src 'self' data:",
        "connect-src 'self' blob:",
        "worker-src 'self' blob:",
        "media-src 'self' blob: data:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
    return "; ".join(directives)


def tile_origin(url_template: str) -> str | None:
    """The origin a tile URL template loads from, with `{s}` subdomains as a wildcard."""
    parts = urlsplit(url_template)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.netloc
    if "{" in host:
        # {s}.tile.example.org: every subdomain of the fixed part.
        fixed = host.split("}", 1)[-1].lstrip(".")
        host = f"*.{fixed}"
    return f"{parts.scheme}://{host}"


def cache_policy(path: str, query: str) -> str | None:
    """How long a browser may keep a static asset without asking again (None: not an asset).

    Bokeh's and Panel's scripts are named with their content hash (`?v=...`): kept for a year.
    Other files under /static/ change only with an upgrade: an hour. Without this each page
    load asked for every script again (eight requests queued on the browser's six connections
    per server), which is what a dozen tabs reloading after a restart wait for, and what a slow
    mobile link pays for on every page. Private: assets are served to signed-in browsers only.
    """
    if not path.startswith("/static/"):
        return None
    if "v=" in query:
        return "private, max-age=31536000, immutable"
    return "private, max-age=3600"


class SecurityHeaders:
    """Add the security headers to every HTTP response that does not set its own."""

    def __init__(
        self, app: ASGIApp, *, tile_origins: list[str] | None = None, https: bool = False
    ) -> None:
        self.app = app
        self.page = page_policy(tile_origins or [])
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                # Pages and scripts get the page policy (a service worker's script sets the
                # policy the worker runs under); data gets the policy that allows nothing.
                data = "json" in headers.get("content-type", "")
                headers.setdefault("Content-Security-Policy", API_POLICY if data else self.page)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Referrer-Policy", "same-origin")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                cache = cache_policy(scope["path"], scope.get("query_string", b"").decode())
                if cache and message["status"] == 200:
                    headers.setdefault("Cache-Control", cache)
                if self.https:
                    # Only over HTTPS: told over plain HTTP, it would lock a browser out.
                    headers.setdefault(
                        "Strict-Transport-Security", "max-age=31536000; includeSubDomains"
                    )
            await send(message)

        await self.app(scope, receive, sending)
