"""A TCP proxy in front of a test server that can cut the link the ways networks do.

`silence()` keeps every connection open but lets no byte through either way (a tunnel, a
sleeping router, a NAT that forgot the flow): nothing tells either end. `refuse()` closes every
connection and refuses new ones (a server that is down). `restore()` lets traffic through
again; connections that were silenced are closed then, as their bytes were lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class CuttableProxy:
    """Forward 127.0.0.1:<port> to a target port (or a Unix socket path); cut and restore."""

    def __init__(self, target_port: int | str) -> None:
        self.target_port = target_port
        self.mode = "open"  # open | silent | refusing
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._silenced: set[asyncio.StreamWriter] = set()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> CuttableProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        self._call(self._close_all)
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def silence(self) -> None:
        self._call(self._set, "silent")

    def refuse(self) -> None:
        self._call(self._set, "refusing")

    def restore(self) -> None:
        self._call(self._set, "open")

    # --- inside the proxy's loop ------------------------------------------------------------

    def _call(self, fn, *args) -> None:
        async def run() -> None:
            fn(*args)

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def _set(self, mode: str) -> None:
        if mode == "silent":
            self._silenced |= self._writers
        elif mode == "refusing":
            self._close_all()
        else:  # open: what was silenced lost bytes, so those connections end now
            for writer in self._silenced:
                writer.transport.abort()
            self._silenced.clear()
        self.mode = mode

    def _close_all(self) -> None:
        for writer in self._writers:
            writer.transport.abort()

    async def _listen(self) -> None:
        self._sock.listen(100)
        self._sock.setblocking(False)
        self._server = await asyncio.start_server(self._accept, sock=self._sock)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == "refusing":
            writer.transport.abort()
            return
        try:
            if isinstance(self.target_port, str):  # a Unix socket (the embedded PostgreSQL)
                up_reader, up_writer = await asyncio.open_unix_connection(self.target_port)
            else:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._writers |= pair
        if self.mode == "silent":
            self._silenced |= pair
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, pair), self._pipe(up_reader, writer, pair)
            )
        finally:
            self._writers -= pair
            self._silenced -= pair
            for w in pair:
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pair: set
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if pair & self._silenced:
                    continue  # lost on the way: neither end hears of it
                writer.write(data)
                await writer.drain()
        for w in pair:
            w.transport.abort()
