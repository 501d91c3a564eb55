"""What a credential opened ends with it: streams and pages watched per process.

Every open WebSocket, SSE stream and dashboard page registers the token it was opened with.
One task per process asks the database every couple of seconds which of the watched tokens no
longer admit anyone (revoked by any process or `fleet user revoke`, a password change, a
deactivated user, past its expiry) and ends what each opened: streams get `unauthorized` and
close, pages go to the sign-in page. Polling the table, not a NOTIFY, keeps this right across
processes and database restarts with one query per interval, whatever the number of clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine

from db import auth

log = logging.getLogger("fleet.credentials")

EndCallback = Callable[[str], None]


@dataclass(eq=False)
class Watch:
    """One open thing (stream, page) and the token it depends on."""

    token_id: int
    expires_at: datetime
    on_end: EndCallback
    ended: str | None = field(default=None, init=False)

    def end(self, reason: str) -> None:
        """End it once, whoever notices first."""
        if self.ended is not None:
            return
        self.ended = reason
        try:
            self.on_end(reason)
        except Exception:  # one page's callback must not keep the others open
            log.exception("ending a watched credential failed")


class CredentialWatch:
    """Ends streams and pages whose credential ended, within `interval` seconds."""

    def __init__(
        self,
        engine: Engine,
        *,
        interval: float = 2.0,
        forget: Callable[[int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self._forget = forget  # drops a token from the bearer cache as soon as it ends
        self._watches: dict[int, set[Watch]] = {}
        self._extra: Callable[[], set[int]] = set
        self._task: asyncio.Task[None] | None = None

    def also_check(self, token_ids: Callable[[], set[int]]) -> None:
        """Check these token ids too (the bearer cache's), so `forget` drops ended ones."""
        self._extra = token_ids

    def watch(self, token_id: int, expires_at: datetime, on_end: EndCallback) -> Watch:
        """Call `on_end(reason)` once, when this token stops admitting its user."""
        w = Watch(token_id, expires_at, on_end)
        self._watches.setdefault(token_id, set()).add(w)
        return w

    def unwatch(self, w: Watch) -> None:
        """Stop watching (the stream or page closed by itself)."""
        group = self._watches.get(w.token_id)
        if group is not None:
            group.discard(w)
            if not group:
                del self._watches[w.token_id]

    def end(self, token_id: int, reason: str) -> None:
        """End at once what this token opened in this process (others notice on their check)."""
        if self._forget is not None:
            self._forget(token_id)
        for w in list(self._watches.pop(token_id, ())):
            w.end(reason)

    @property
    def watched(self) -> int:
        return sum(len(g) for g in self._watches.values())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fleet-credential-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: try again next round
                log.warning("credential check failed: %s", exc.__class__.__name__)

    async def check(self) -> None:
        """End everything opened by a credential that no longer admits anyone."""
        now = datetime.now(UTC)
        ended: dict[int, str] = {}
        for token_id, group in self._watches.items():
            # Expiry needs no query: each watch knows its token's own expiry.
            if any(w.expires_at <= now for w in group):
                ended[token_id] = "the session expired"
        ids = (set(self._watches) | self._extra()) - set(ended)
        if ids:
            ended |= await asyncio.to_thread(self._ended, ids)
        for token_id, reason in ended.items():
            self.end(token_id, reason)

    def _ended(self, ids: set[int]) -> dict[int, str]:
        with self.engine.connect() as conn:
            return auth.ended_tokens(conn, token_ids=ids)
