"""Local stand-ins for the outside world notifications go to: SMTP relay, webhook, push service.

All are real servers on 127.0.0.1 (aiosmtpd speaks real SMTP; the webhook is an
http.server), so the tests exercise the same sockets and protocols as production. A
browser's push service is the webhook server answering what FCM or Mozilla would; the
browser's side of the subscription (keys, decryption) is PushDevice.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from requests.structures import CaseInsensitiveDict


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
    headers: CaseInsensitiveDict  # as HTTP means them: Content-Type is content-type
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookSink:
    """A real HTTP server on a free local port that records every request.

    It answers 500 to the first `fail_first` requests, then `status` (200 unless told), or
    the status `by_path` names for the request's path.
    """

    fail_first: int = 0
    status: int = 200
    by_path: dict[str, int] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    failing = len(sink.requests) < sink.fail_first
                    code = 500 if failing else sink.by_path.get(self.path, sink.status)
                    sink.requests.append(
                        Request(self.path, CaseInsensitiveDict(self.headers.items()), body, code)
                    )
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
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

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


@dataclass
class PushDevice:
    """A browser's side of a Web Push subscription: its key pair and auth secret.

    What PushManager.subscribe makes in a real browser; the test keeps the private key so it
    can decrypt what the server sent, exactly as the browser would.
    """

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def keys(self) -> dict[str, str]:
        point = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {"p256dh": b64url(point), "auth": b64url(self.auth)}

    def decrypt(self, body: bytes) -> Any:
        """Decrypt an aes128gcm push message body and parse its JSON."""
        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def vapid_claims(request: Request, *, server_key: str) -> dict[str, Any]:
    """Check a push request's VAPID header (RFC 8292) and return its JWT claims.

    The header must be `vapid t=<JWT>, k=<key>` with k the server's public key and the JWT
    signed with ES256 by that key; an assertion error says what is wrong.
    """
    scheme, _, params = request.headers["Authorization"].partition(" ")
    assert scheme == "vapid", request.headers["Authorization"]
    fields = dict(p.strip().split("=", 1) for p in params.split(","))
    assert fields["k"] == server_key
    head, claims, signature = fields["t"].split(".")
    assert json.loads(unb64url(head)) == {"typ": "JWT", "alg": "ES256"}
    raw = unb64url(signature)
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(fields["k"]))
    # JWS carries r || s; cryptography verifies DER.
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public.verify(der, f"{head}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(unb64url(claims))
