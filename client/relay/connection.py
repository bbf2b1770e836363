"""The connection to the relay: one authenticated WebSocket at a time, and its reconnects.

It owns the socket and its life: connecting, the challenge–response login (PROTOCOL.md
§3.2), the receive loop, reconnecting with a jittered backoff (only a connection that
lasted resets it), the ``Connected``/``Disconnected``/``Synced`` events, and requests that
expect one answer (matched by ``rid``). Every other frame goes to the ``dispatch`` it is
given, and ``while_connected`` runs beside the receive loop on each connection (the
outbox), so this module knows nothing of messages, outboxes or encryption.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiohttp

from client.errors import ClientError, error_message
from client.events import ClientEvent, Connected, Disconnected, RelayError, Synced
from client.profile import Identity, Profile
from client.timeutil import local_utc_offset, utc_now
from protocol import identity as identity_messages
from protocol.codec import FrameError, decode_relay_frame, encode_frame
from protocol.frames import (
    Auth,
    Bundle,
    Challenge,
    ContactsResult,
    Done,
    Error,
    Frame,
    GuardiansResult,
    Ready,
    RelayFrame,
    SearchResult,
)
from protocol.frames import Synced as SyncedFrame
from protocol.group_frames import GroupResult, GroupsResult
from protocol.limits import MAX_WEBSOCKET_MESSAGE_BYTES
from protocol.moderation import (
    ModCaseResult,
    ModCases,
    ModEvidence,
    ModOverviewResult,
    ModPreviewResult,
    ModQueuesResult,
    ModRequest,
    sign_request,
)
from protocol.policy import band, is_minor

log = logging.getLogger("agechat.client")

#: Disconnects after which reconnecting would not help.
FATAL_CLOSE = frozenset({"auth_failed", "session_replaced"})
HANDSHAKE_TIMEOUT = 10.0
#: A connection that lasted this long resets the reconnect backoff.
STABLE_CONNECTION_SECONDS = 10.0
#: Frames that answer a request, matched to it by their ``rid``.
ANSWERS = (
    Done,
    ContactsResult,
    SearchResult,
    Bundle,
    GuardiansResult,
    GroupResult,
    GroupsResult,
    ModQueuesResult,
    ModCases,
    ModCaseResult,
    ModEvidence,
    ModOverviewResult,
    ModPreviewResult,
)

Dispatch = Callable[[RelayFrame], Awaitable[None]]


def websocket_url(server: str) -> str:
    if server.startswith("https://"):
        return "wss://" + server.removeprefix("https://").rstrip("/") + "/v1/ws"
    if server.startswith("http://"):
        return "ws://" + server.removeprefix("http://").rstrip("/") + "/v1/ws"
    raise ClientError("invalid_server_url", f"{server!r} is not an http(s):// URL")


class Connection:
    def __init__(
        self,
        profile: Profile,
        identity: Identity,
        events: asyncio.Queue[ClientEvent],
        *,
        reconnect: bool,
        max_backoff: float,
        dispatch: Dispatch,
        while_connected: Callable[[], Awaitable[None]],
        on_gone: Callable[[ClientError], None],
        utc_offset: Callable[[], timedelta] = local_utc_offset,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._profile = profile
        self._utc_offset = utc_offset
        self._clock = clock
        self._identity = identity
        self._challenge: Challenge | None = None
        #: The relay's clock minus ours, from the latest challenge.
        self.clock_offset = timedelta(0)
        self._events = events
        self._reconnect = reconnect
        self._max_backoff = max_backoff
        self._dispatch = dispatch
        self._while_connected = while_connected
        self._on_gone = on_gone  # no more connections are coming: tell other waiters
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._requests: dict[str, asyncio.Future[RelayFrame]] = {}
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self._fatal: str | None = None
        self.last_disconnect: Disconnected | None = None
        #: Set once the backlog queued at the relay when this connection opened has arrived.
        self.synced = asyncio.Event()

    @property
    def handle(self) -> str:
        return self._profile.handle

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    @property
    def gave_up(self) -> ClientError | None:
        """Why the client stopped reconnecting, once it has."""
        if self._stopped.is_set() and self.last_disconnect is not None:
            return ClientError(self.last_disconnect.code, self.last_disconnect.message)
        return None

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name=f"relay-client-{self.handle}")

    async def stop(self) -> None:
        """End the connection loop (the session stays open until ``close_session``)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def close_session(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def reconnect_now(self) -> None:
        """Drop the current connection; the loop reconnects (if it may)."""
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def wait_connected(self, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Return once authenticated; raise the reason if the client gave up first."""
        connected = asyncio.create_task(self._connected.wait())
        stopped = asyncio.create_task(self._stopped.wait())
        _, pending = await asyncio.wait(
            {connected, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if self._connected.is_set():
            return
        if self.last_disconnect is not None:
            raise ClientError(self.last_disconnect.code, self.last_disconnect.message)
        raise ClientError("timeout", "The relay did not answer in time.")

    # --- frames out -----------------------------------------------------------------

    async def send(self, frame: Frame) -> None:
        """Send on the current connection (raises if it is gone or going)."""
        ws = self._ws
        if ws is None:
            raise ClientError("relay_unreachable")
        await ws.send_str(encode_frame(frame))

    async def request(
        self, frame: Frame, rid: str, timeout: float = HANDSHAKE_TIMEOUT
    ) -> RelayFrame:
        """Send a request and return its answer (an `error` answer is raised)."""
        await self.wait_connected(timeout)
        future: asyncio.Future[RelayFrame] = asyncio.get_running_loop().create_future()
        self._requests[rid] = future
        ws = self._ws
        if ws is None:
            raise ClientError("relay_unreachable")
        try:
            await ws.send_str(encode_frame(frame))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ClientError("timeout") from None
        finally:
            self._requests.pop(rid, None)

    def relay_id(self) -> str:
        """The relay's id from the current connection's challenge (signed HTTP requests
        name it)."""
        if self._challenge is None:
            raise ClientError("relay_unreachable", "Not connected to the relay yet.")
        return self._challenge.relay_id

    async def signed_request(
        self, frame: ModRequest, timeout: float = HANDSHAKE_TIMEOUT
    ) -> RelayFrame:
        """A moderation request, signed over this connection's challenge (PROTOCOL.md §6.5).
        Signed again and resent once if the connection changed under it."""
        for attempt in (1, 2):
            await self.wait_connected(timeout)
            challenge = self._challenge
            assert challenge is not None
            signed = sign_request(
                self._identity.sign, challenge.relay_id, challenge.nonce, self.handle, frame
            )
            try:
                return await self.request(signed, frame.rid, timeout)
            except ClientError as exc:
                if exc.code != "bad_signature" or attempt == 2 or self._challenge is challenge:
                    raise
        raise AssertionError("unreachable")

    # --- the loop -------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.5
        loop = asyncio.get_running_loop()
        try:
            while True:
                started = loop.time()
                try:
                    await self._connect_once()
                    code, message = "connection_closed", "The relay closed the connection."
                except ClientError as exc:
                    code, message = exc.code, exc.message
                except aiohttp.ClientConnectorCertificateError as exc:
                    code, message = "tls_untrusted", f"{error_message('tls_untrusted')} ({exc})"
                except TimeoutError:
                    code, message = "timeout", "The relay did not answer in time."
                except (aiohttp.ClientError, OSError) as exc:
                    detail = str(exc) or type(exc).__name__
                    code, message = (
                        "relay_unreachable",
                        f"The relay could not be reached ({detail}).",
                    )
                except Exception as exc:  # a bug here must not end the client silently
                    log.exception("relay connection failed")
                    code, message = (
                        "internal_error",
                        f"The client hit an unexpected error ({exc!r}).",
                    )
                finally:
                    self._connected.clear()
                    self._ws = None
                if loop.time() - started > STABLE_CONNECTION_SECONDS:
                    backoff = 0.5  # only a connection that lasted resets the backoff
                retry = self._reconnect and code not in FATAL_CLOSE and code != "tls_untrusted"
                delay = (
                    min(backoff, self._max_backoff) * (0.5 + random.random() / 2) if retry else None
                )
                event = Disconnected(code=code, message=message, retry_in=delay)
                self.last_disconnect = event
                await self._events.put(event)
                if delay is None:
                    self._fail_waiters(ClientError(code, message))
                    return
                await asyncio.sleep(delay)
                backoff *= 2
        finally:
            self._stopped.set()

    def _fail_waiters(self, error: ClientError) -> None:
        """No more connections are coming: whoever waits for an answer gets the reason now."""
        self._on_gone(error)
        for future in self._requests.values():
            if not future.done():
                future.set_exception(error)
        self._requests.clear()

    async def _connect_once(self) -> None:
        assert self._session is not None
        url = websocket_url(self._profile.server)
        async with self._session.ws_connect(
            url,
            heartbeat=30.0,
            max_msg_size=MAX_WEBSOCKET_MESSAGE_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
        ) as ws:
            await asyncio.wait_for(self._handshake(ws), HANDSHAKE_TIMEOUT)
            self._ws = ws
            self.synced.clear()
            self._connected.set()
            await self._events.put(Connected(handle=self.handle))
            worker = asyncio.create_task(self._while_connected())
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await self._on_text(msg.data)
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        break
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            if self._fatal is not None:
                code, self._fatal = self._fatal, None
                raise ClientError(code)

    def _local_offset_if_minor(self) -> int | None:
        """The holder's UTC offset for the relay's time-of-night signal, told only by a
        minor's client (an adult's local time is nobody's business; §3.2)."""
        if not is_minor(band(self._profile.data.birthdate, self._clock().date())):
            return None
        minutes = round(self._utc_offset().total_seconds() / 60)
        return minutes if -720 <= minutes <= 840 else None

    async def _receive_frame(self, ws: aiohttp.ClientWebSocketResponse) -> RelayFrame:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ClientError("relay_unreachable", "The relay closed the connection during login.")
        try:
            return decode_relay_frame(msg.data)
        except FrameError as exc:
            raise ClientError("protocol_error", str(exc)) from None

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Challenge–response (PROTOCOL.md §3.2)."""
        challenge = await self._receive_frame(ws)
        if not isinstance(challenge, Challenge):
            raise ClientError(
                "protocol_error", f"expected a challenge, got {type(challenge).__name__}"
            )
        self._challenge = challenge  # moderation requests sign over this connection's nonce
        # Signed HTTP requests carry a time the relay checks to ±5 minutes: sign with the
        # relay's idea of now, so a skewed clock here doesn't refuse every download.
        self.clock_offset = challenge.server_time - datetime.now(UTC)
        signed = identity_messages.auth_message(challenge.relay_id, challenge.nonce, self.handle)
        auth = Auth(
            handle=self.handle,
            signature=self._identity.sign(signed),
            utc_offset_minutes=self._local_offset_if_minor(),
        )
        await ws.send_str(encode_frame(auth))
        reply = await self._receive_frame(ws)
        if isinstance(reply, Error):
            raise ClientError(reply.code, reply.message)
        if not isinstance(reply, Ready):
            raise ClientError("protocol_error", f"expected ready, got {type(reply).__name__}")

    # --- frames in ------------------------------------------------------------------

    async def _on_text(self, text: str) -> None:
        try:
            frame = decode_relay_frame(text)
        except FrameError as exc:
            log.warning("undecodable frame from relay: %s", exc)
            await self._events.put(RelayError(code="protocol_error", message=str(exc)))
            return
        if isinstance(frame, ANSWERS):
            future = self._requests.pop(frame.rid, None)
            if future is not None and not future.done():
                future.set_result(frame)
        elif isinstance(frame, SyncedFrame):
            self.synced.set()
            await self._events.put(Synced())
        elif not (isinstance(frame, Error) and await self._connection_error(frame)):
            await self._dispatch(frame)

    async def _connection_error(self, frame: Error) -> bool:
        """Handle an `error` that answers a request or is about the connection itself;
        False if it is about a message (the caller's to handle)."""
        request = self._requests.pop(frame.ref, None) if frame.ref else None
        if request is not None:
            if not request.done():
                request.set_exception(ClientError(frame.code, frame.message))
            return True
        if frame.ref is None:
            if frame.code in FATAL_CLOSE:
                self._fatal = frame.code
            await self._events.put(RelayError(code=frame.code, message=frame.message))
            return True
        return False
