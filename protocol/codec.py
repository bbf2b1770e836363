"""Decode-and-validate in one call, with a stable error code for every way it can fail."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from protocol.errors import wire_message
from protocol.frames import (
    CLIENT_FRAME_TYPES,
    RELAY_FRAME_TYPES,
    ClientFrame,
    Frame,
    GroupSend,
    RelayFrame,
)
from protocol.limits import MAX_FRAME_BYTES, MAX_WEBSOCKET_MESSAGE_BYTES

T = TypeVar("T")

_encoder = msgspec.json.Encoder()

#: What a parser raises on text that isn't JSON it can read. msgspec raises RecursionError
#: on nesting deeper than the interpreter's recursion limit (about 1,000 levels): that is
#: unparsable input like any other, not a fault of the reader.
UNPARSABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


class FrameError(Exception):
    """A frame that could not be accepted, with its wire error code."""

    def __init__(self, code: str, detail: str | None = None, ref: str | None = None) -> None:
        self.code = code
        self.detail = detail
        #: The `id` or `rid` of the frame, when it could be read, so the sender can match
        #: the refusal to what it sent.
        self.ref = ref
        super().__init__(f"{code}: {detail or wire_message(code)}")

    @property
    def message(self) -> str:
        """The sentence to send back: the code's sentence, plus what exactly was wrong."""
        base = wire_message(self.code)
        return f"{base} ({self.detail})" if self.detail else base


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it when it is ASCII (most text; CPython
    knows that of a string without looking at it)."""
    return len(text) if text.isascii() else len(text.encode())


class _FrameDecoder(Generic[T]):
    def __init__(
        self,
        union: Any,
        known_types: frozenset[str],
        max_bytes: int,
        *,
        default_limit: int | None = None,
        limits: dict[type, int] | None = None,
    ) -> None:
        """``max_bytes``: nothing larger is parsed. ``default_limit``/``limits``: each frame
        type's own limit (at most ``max_bytes``), checked once it is parsed."""
        self._decoder: msgspec.json.Decoder[T] = msgspec.json.Decoder(union)
        self._known = known_types
        self._max_bytes = max_bytes
        self._default_limit = default_limit or max_bytes
        self._limits = limits or {}
        self._smallest = min([max_bytes, self._default_limit, *self._limits.values()])

    def decode(self, data: str | bytes) -> T:
        """Parse and validate one frame or raise FrameError with the matching code."""
        if isinstance(data, str):
            # A character is at most 4 bytes of UTF-8: text this short is under every limit,
            # and its exact size is never needed (most frames; encoding costs a copy).
            size = len(data) if 4 * len(data) <= self._smallest else len(data.encode())
        else:
            size = len(data)
        if size > self._max_bytes:
            raise FrameError("frame_too_large", f"{size} bytes, limit {self._max_bytes}")
        try:
            frame = self._decoder.decode(data)
        except msgspec.ValidationError as exc:
            raise (
                self._too_large(size)
                if size > self._default_limit
                else self._classify(data, str(exc))
            ) from None
        except UNPARSABLE:
            raise (
                self._too_large(size) if size > self._default_limit else FrameError("invalid_json")
            ) from None
        if size > self._smallest and size > self._frame_limit(frame):
            raise FrameError("frame_too_large", f"{size} bytes, limit {self._frame_limit(frame)}")
        return frame

    def _too_large(self, size: int) -> FrameError:
        return FrameError("frame_too_large", f"{size} bytes, limit {self._default_limit}")

    def _frame_limit(self, frame: object) -> int:
        return self._limits.get(type(frame), self._default_limit)

    def _classify(self, data: str | bytes, detail: str) -> FrameError:
        # Only on the error path: look again to tell an unknown type from a bad field.
        try:
            raw = msgspec.json.decode(data)
        except UNPARSABLE:  # e.g. b'"\x80"': not UTF-8
            return FrameError("invalid_json")
        if not isinstance(raw, dict):
            return FrameError("invalid_frame", "a frame is a JSON object")
        frame_type = raw.get("type")
        if not isinstance(frame_type, str):
            return FrameError("invalid_frame", "missing string field `type`")
        if frame_type not in self._known:
            return FrameError("unknown_frame_type", f"type {frame_type[:40]!r}")
        ref = raw.get("rid", raw.get("id"))
        ref = ref if isinstance(ref, str) and 0 < len(ref) <= 64 else None
        return FrameError("invalid_frame", detail, ref)


# A `group_send` in `e2ee` carries one envelope per member: it may use the whole transport
# limit; every other frame from a client, MAX_FRAME_BYTES (PROTOCOL.md §2).
client_frames: _FrameDecoder[ClientFrame] = _FrameDecoder(
    ClientFrame,
    CLIENT_FRAME_TYPES,
    MAX_WEBSOCKET_MESSAGE_BYTES,
    default_limit=MAX_FRAME_BYTES,
    limits={GroupSend: MAX_WEBSOCKET_MESSAGE_BYTES},
)
# A `deliver` is a little larger than the `send` it carries: clients accept up to the
# transport limit (PROTOCOL.md §2).
relay_frames: _FrameDecoder[RelayFrame] = _FrameDecoder(
    RelayFrame, RELAY_FRAME_TYPES, MAX_WEBSOCKET_MESSAGE_BYTES
)


def decode_client_frame(data: str | bytes) -> ClientFrame:
    """Decode a frame a client sent to the relay."""
    return client_frames.decode(data)


def decode_relay_frame(data: str | bytes) -> RelayFrame:
    """Decode a frame the relay sent to a client."""
    return relay_frames.decode(data)


def encode_frame(frame: Frame) -> str:
    """Serialise a frame as the JSON text of one WebSocket text message."""
    return _encoder.encode(frame).decode()


def encode_frame_bytes(frame: Frame) -> bytes:
    """``encode_frame`` as the UTF-8 bytes a WebSocket text frame carries."""
    return _encoder.encode(frame)


def encode(value: object) -> bytes:
    """Serialise any protocol Struct (HTTP bodies) to JSON bytes."""
    return _encoder.encode(value)
