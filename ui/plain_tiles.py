"""A one-colour slippy-map tile server on loopback: the wall's tile mode without a map provider.

A deployment names its tile server with FUELTWIN_TILE_URL (``ui/pages.py``); this machine has no
internet, so the browser test and ``bench/wall.py --tiles`` serve plain tiles of their own, built here
(a valid PNG needs no image library), and record which tiles the page asked for.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def solid_png(size: int = 256, rgb: tuple[int, int, int] = (18, 36, 64)) -> bytes:
    """A valid one-colour PNG (what a tile server returns), built here: no image library needed."""
    raw = b"".join(b"\x00" + bytes(rgb) * size for _ in range(size))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


class TileServer:
    """``/{z}/{x}/{y}.png`` on 127.0.0.1, recording every tile asked for."""

    def __init__(self) -> None:
        self.requested: list[tuple[int, int, int]] = []
        self.png = solid_png()

        async def tile(request: Request) -> Response:
            p = request.path_params
            self.requested.append((p["z"], p["x"], p["y"]))
            return Response(self.png, media_type="image/png")

        self.app = Starlette(routes=[Route("/{z:int}/{x:int}/{y:int}.png", tile)])
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self.task: asyncio.Task[None] | None = None
        self.base = ""

    async def __aenter__(self) -> TileServer:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        async with asyncio.timeout(10):
            while not self.server.started:
                await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        async with asyncio.timeout(15):
            await self.task
