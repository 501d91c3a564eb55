"""Local stand-ins for the outside world notifications go to: an SMTP relay and a webhook.

Both are real servers on 127.0.0.1 (aiosmtpd speaks real SMTP; the webhook is an
http.server), so the tests exercise the same sockets and protocols as production.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    """One e-mail as the relay got it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.sink.lock:
            self.sink.messages.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), parsed)  # type: ignore[arg-type]
            )
        return "250 OK"


class _AnyPortController(Controller):
    # aiosmtpd cannot listen on port 0 by itself: learn the port the OS picked before
    # the controller connects to check that the server is up.
    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpSink:
    """A real SMTP server on a free local port that keeps what it receives.

    With `credentials` it advertises AUTH (over plain text, as a local test relay may),
    accepts only that username and password, and records each successful login.
    """

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.messages: list[Received] = []
        self.logins: list[str] = []
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if credentials is not None:
            kwargs = {
                "authenticator": self._authenticator(credentials),
                "auth_require_tls": False,
            }
        self._controller = _AnyPortController(
            _Handler(self), hostname="127.0.0.1", port=0, **kwargs
        )

    def _authenticator(self, credentials: tuple[str, str]):
        def check(server, session, envelope, mechanism, auth_data) -> AuthResult:
            ok = (
                isinstance(auth_data, LoginPassword)
                and (
                    auth_data.login.decode(),
                    auth_data.password.decode(),
                )
                == credentials
            )
            if ok:
                self.logins.append(auth_data.login.decode())
            # handled=False: let aiosmtpd answer 535 itself rather than leave the client waiting.
            return AuthResult(success=ok, handled=False)

        return check

    @property
    def port(self) -> int:
        return self._controller.port

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@dataclass
class Request:
    """One request as the webhook got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookSink:
    """A real HTTP server on a free local port that records every request.

    It answers 500 to the first `fail_first` requests, then `status` (200 unless told).
    """

    fail_first: int = 0
    status: int = 200
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    failing = len(sink.requests) < sink.fail_first
                    code = 500 if failing else sink.status
                    sink.requests.append(Request(self.path, dict(self.headers.items()), body, code))
                reply = b"receiver is down" if failing else b"ok"
                self.send_response(code)
                self.send_header("Content-Length", str(len(reply)))
                if 300 <= code < 400:
                    self.send_header("Location", "/elsewhere")
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output quiet

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/fleet"

    @property
    def delivered(self) -> list[Request]:
        """The requests it answered with 2xx."""
        return [r for r in self.requests if 200 <= r.status < 300]

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def closed_port() -> int:
    """Return a local port nothing listens on (an SMTP relay that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
