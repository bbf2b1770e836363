"""What every per-feature frame handler needs of its WebSocket session (server/edge/
websocket.py's ``_Session`` provides it); each handler module adds what else it uses."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from protocol.frames import Frame


class SessionBase(Protocol):
    app: web.Application

    @property
    def handle(self) -> str: ...

    async def send(self, frame: Frame) -> None: ...

    async def refuse(
        self, code: str, detail: str | None = None, ref: str | None = None
    ) -> None: ...
