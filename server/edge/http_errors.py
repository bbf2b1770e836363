"""HTTP error responses in the one shape every route uses."""

from __future__ import annotations

from aiohttp import web

from protocol.codec import encode
from protocol.errors import wire_message
from protocol.registration import ErrorBody, ErrorDetail


def error_response(status: int, code: str, detail: str | None = None) -> web.Response:
    message = wire_message(code) + (f" ({detail})" if detail else "")
    body = encode(ErrorBody(error=ErrorDetail(code=code, message=message)))
    return web.Response(status=status, body=body, content_type="application/json")
