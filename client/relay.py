"""RelayClient: one account's connection to the relay, with outbox and reconnects.

The client persists before it acts: an outgoing message is in history (state ``pending``)
before it is sent, an incoming one is in history before it is acknowledged. So the relay
deletes only what the client has, and the client resends whatever the relay has not
confirmed. After every (re)connect the outbox is resent in order; the relay's idempotent
ids make that safe (PROTOCOL.md §5).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import date, datetime

import aiohttp

from client.crypto_store import STORE_FILE, CryptoStore
from client.declaration import sign_declaration
from client.e2ee import ONE_TIME_BATCH, Decrypted, EndToEnd, SafetyNumber
from client.errors import ClientError, error_message
from client.events import (
    ClientEvent,
    Connected,
    Disconnected,
    MessageAccepted,
    MessageDelivered,
    MessageReceived,
    MessageRefused,
    RelayError,
    Synced,
)
from client.history import FrankingEvidence, History, HistoryMessage, peer_of
from client.profile import Identity, Profile
from client.timeutil import utc_now
from protocol import identity as identity_messages
from protocol.codec import FrameError, decode_relay_frame, encode_frame
from protocol.crypto import CryptoError, IdentityKeyPair
from protocol.frames import (
    RELAY_HANDLE,
    Accepted,
    Ack,
    Auth,
    Block,
    Bundle,
    Challenge,
    ContactEntry,
    ContactRequest,
    ContactRespond,
    ContactsList,
    ContactsResult,
    Deliver,
    Delivered,
    Done,
    Error,
    FetchBundle,
    Frame,
    MessageRef,
    OneTimePrekey,
    Person,
    PrekeysLow,
    Ready,
    Redeclare,
    RelayFrame,
    Report,
    ReportedMessage,
    Search,
    SearchResult,
    Send,
    SetBirthdate,
    SignedPrekey,
    Unblock,
    UploadPrekeys,
    conversation_id,
)
from protocol.frames import Synced as SyncedFrame
from protocol.limits import MAX_BODY_CHARS, MAX_FRAME_BYTES, MAX_WEBSOCKET_MESSAGE_BYTES
from protocol.policy import band

log = logging.getLogger("agechat.client")

#: The one refusal after which a resend may succeed (nothing was stored); every other
#: refusal of a message is final and the message is marked failed, not retried.
RETRYABLE_REFUSALS = frozenset({"internal_error"})
#: Disconnects after which reconnecting would not help.
FATAL_CLOSE = frozenset({"auth_failed", "session_replaced"})

HANDSHAKE_TIMEOUT = 10.0
#: A connection that lasted this long resets the reconnect backoff.
STABLE_CONNECTION_SECONDS = 10.0
#: Pause before resending a message the relay failed to store.
RETRY_DELAY_SECONDS = 1.0
HANDLE_PATTERN = re.compile(r"[a-z0-9_]{3,32}")
#: Refusals of a message that leave it in the outbox (the relay or network may recover).
TRANSIENT_CODES = frozenset({"timeout", "relay_unreachable", "internal_error", "no_prekeys"})
#: Relay events after which the conversation's mode may have changed: ask again.
MODE_EVENTS = frozenset({"band_changed", "contact_accepted", "mode_changed"})
#: Base64 of an envelope is about 4/3 of the text plus headers, so an e2ee message's text
#: must leave room: the longest text that still fits the body limit once encrypted.
MAX_E2EE_TEXT_BYTES = (MAX_BODY_CHARS // 4) * 3 - 256


def websocket_url(server: str) -> str:
    if server.startswith("https://"):
        return "wss://" + server.removeprefix("https://").rstrip("/") + "/v1/ws"
    if server.startswith("http://"):
        return "ws://" + server.removeprefix("http://").rstrip("/") + "/v1/ws"
    raise ClientError("invalid_server_url", f"{server!r} is not an http(s):// URL")


def new_message_id() -> str:
    """128 random bits, URL-safe: unique without coordination."""
    return secrets.token_urlsafe(16)


class RelayClient:
    """Use as ``async with RelayClient(...) as client:``; read ``client.events()``."""

    def __init__(
        self,
        profile: Profile,
        identity: Identity,
        history: History,
        *,
        reconnect: bool = True,
        clock: Callable[[], datetime] = utc_now,
        max_backoff: float = 30.0,
    ) -> None:
        self.profile = profile
        self._identity = identity
        self.history = history
        self._reconnect = reconnect
        self._clock = clock
        self._max_backoff = max_backoff
        self._events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._outbox_wake = asyncio.Event()
        self._pending: dict[str, asyncio.Future[HistoryMessage]] = {}
        self._requests: dict[str, asyncio.Future[RelayFrame]] = {}
        self._sent_here: set[str] = set()  # outbox ids sent on the current connection
        self._connected = asyncio.Event()
        self._stopped = asyncio.Event()
        self.last_disconnect: Disconnected | None = None
        self.synced = asyncio.Event()
        seed = bytes(identity.signing_key)
        self.e2ee = EndToEnd(
            CryptoStore(profile.directory / STORE_FILE, seed),
            IdentityKeyPair.from_seed(seed),
            profile.handle,
            own_band=lambda: band(self.profile.data.birthdate, self._clock().date()),
            clock=clock,
            on_key_change=self._key_changed,
        )
        #: Set once this connection's prekeys are published (or found already published).
        self.prekeys_published = asyncio.Event()
        self._mode_retried: set[str] = set()
        self._topping_up = False  # one one-time prekey top-up at a time
        self._background: set[asyncio.Task[None]] = set()

    @property
    def handle(self) -> str:
        return self.profile.handle

    @property
    def is_connected(self) -> bool:
        return self._connected.is_set()

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> RelayClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self.e2ee.store.open()
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name=f"relay-client-{self.handle}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()
        await self.e2ee.store.close()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClientError("relay_unreachable", "The client was closed."))

    async def reconnect_now(self) -> None:
        """Drop the current connection; the client reconnects and resends its outbox."""
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

    async def events(self) -> AsyncIterator[ClientEvent]:
        while True:
            yield await self._events.get()

    async def next_event(self, timeout: float | None = None) -> ClientEvent | None:
        """The next event, or None after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    # --- sending --------------------------------------------------------------------

    def _check_sendable(self, to: str, text: str) -> None:
        """Refuse here what the relay would refuse as malformed, before it enters the outbox
        (a message the relay can't decode would otherwise be resent forever)."""
        if not HANDLE_PATTERN.fullmatch(to):
            raise ClientError("invalid_handle", f"{to!r} is not a handle.")
        if to == self.handle:
            raise ClientError("cannot_target_self")
        frame = Send(id=new_message_id(), to=to, mode="visible", body=text)
        size = len(encode_frame(frame).encode())
        too_long = len(text) > MAX_BODY_CHARS or len(text.encode()) > MAX_E2EE_TEXT_BYTES
        if too_long or size > MAX_FRAME_BYTES:
            raise ClientError(
                "message_too_large",
                f"The message is too long ({size} bytes encoded, limit {MAX_FRAME_BYTES}).",
            )

    async def send(self, to: str, text: str) -> HistoryMessage:
        """Put a message in the outbox (durably) and hand it to the connection.

        Returns at once; ``wait_accepted`` waits for the relay to store it.
        """
        self._check_sendable(to, text)
        known = await self.e2ee.peer(to)
        message = await self.history.add_outgoing(
            sender=self.handle,
            msg_id=new_message_id(),
            recipient=to,
            conversation=conversation_id(self.handle, to),
            # Decided when it leaves; until then never claim more protection than is known.
            mode=(known.mode if known and known.mode else "visible"),
            body=text,
            created_at=self._clock(),
        )
        self._future_for(message.msg_id)
        self._outbox_wake.set()
        return message

    async def wait_accepted(
        self, msg_id: str, timeout: float = HANDSHAKE_TIMEOUT
    ) -> HistoryMessage:
        """Return the message once the relay has stored it; raise its refusal otherwise."""
        if self._stopped.is_set() and self.last_disconnect is not None:
            raise ClientError(self.last_disconnect.code, self.last_disconnect.message)
        future = self._future_for(msg_id)  # before looking, so an acceptance can't slip by
        known = await self.history.get(self.handle, msg_id)
        if known is not None and known.state in ("sent", "delivered"):
            self._pending.pop(msg_id, None)
            return known
        if known is not None and known.state == "failed":
            self._pending.pop(msg_id, None)
            raise ClientError(known.error_code or "refused")
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise ClientError(
                "timeout",
                "The relay has not confirmed the message yet; "
                "it stays in the outbox and is resent on the next connection.",
            ) from None

    async def drain_outbox(self, timeout: float = HANDSHAKE_TIMEOUT) -> int:
        """Wait (while connected) until the relay has answered every pending message.

        Returns how many are still pending afterwards.
        """
        pending = await self.history.outbox()
        if pending and self.is_connected:
            waits = [self.wait_accepted(m.msg_id, timeout) for m in pending]
            await asyncio.gather(*waits, return_exceptions=True)
        return len(await self.history.outbox())

    def _future_for(self, msg_id: str) -> asyncio.Future[HistoryMessage]:
        future = self._pending.get(msg_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # Mark a refusal as seen even when nobody awaits it (no "never retrieved" noise).
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._pending[msg_id] = future
        return future

    # --- requests: contacts, search, blocks, reports, birth date (PROTOCOL.md §6.2) ---

    async def _request(
        self, frame: Frame, rid: str, timeout: float = HANDSHAKE_TIMEOUT
    ) -> RelayFrame:
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

    async def _done(self, frame: Frame, rid: str) -> str:
        reply = await self._request(frame, rid)
        if not isinstance(reply, Done):
            raise ClientError("protocol_error", f"expected done, got {type(reply).__name__}")
        return reply.outcome

    async def contact_request(self, handle: str) -> str:
        rid = new_message_id()
        return await self._done(ContactRequest(rid=rid, to=handle), rid)

    async def respond(self, handle: str, accept: bool) -> str:
        rid = new_message_id()
        return await self._done(ContactRespond(rid=rid, handle=handle, accept=accept), rid)

    async def contacts(self) -> list[ContactEntry]:
        rid = new_message_id()
        reply = await self._request(ContactsList(rid=rid), rid)
        if not isinstance(reply, ContactsResult):
            raise ClientError("protocol_error", f"expected contacts, got {type(reply).__name__}")
        return reply.contacts

    async def search(self, query: str) -> list[Person]:
        rid = new_message_id()
        reply = await self._request(Search(rid=rid, query=query), rid)
        if not isinstance(reply, SearchResult):
            raise ClientError("protocol_error", f"expected results, got {type(reply).__name__}")
        return reply.results

    async def block(self, handle: str) -> str:
        rid = new_message_id()
        return await self._done(Block(rid=rid, handle=handle), rid)

    async def unblock(self, handle: str) -> str:
        rid = new_message_id()
        return await self._done(Unblock(rid=rid, handle=handle), rid)

    async def report(self, handle: str, reason: str, last: int = 5) -> list[HistoryMessage]:
        """Report ``handle``, attaching the last ``last`` messages of our conversation as this
        client has them. Returns what was attached."""
        messages = await self.history.last_messages(conversation_id(self.handle, handle), last)
        evidence = [
            _reported(m, await self.history.franking_evidence(m.sender, m.msg_id)) for m in messages
        ]
        rid = new_message_id()
        await self._done(Report(rid=rid, handle=handle, reason=reason, messages=evidence), rid)
        return messages

    async def upload_prekeys(
        self, signed: SignedPrekey | None, one_time: list[OneTimePrekey]
    ) -> int:
        """Publish prekeys (issue #4); returns the relay's one-time stock afterwards."""
        rid = new_message_id()
        outcome = await self._done(
            UploadPrekeys(rid=rid, signed_prekey=signed, one_time_prekeys=one_time), rid
        )
        return int(outcome.partition(":")[2] or 0)

    async def fetch_bundle(self, handle: str, *, one_time_prekey: bool = True) -> Bundle:
        """Another account's key bundle: to start an X3DH session, or (without a one-time
        prekey, which would be wasted) to learn the mode and their declaration."""
        rid = new_message_id()
        frame = FetchBundle(rid=rid, handle=handle, one_time_prekey=one_time_prekey)
        reply = await self._request(frame, rid)
        if not isinstance(reply, Bundle):
            raise ClientError("protocol_error", f"expected a bundle, got {type(reply).__name__}")
        return reply

    async def safety_number(self, handle: str) -> SafetyNumber:
        """The safety number with ``handle`` (fetching and pinning their key if new)."""
        if await self.e2ee.peer(handle) is None:
            bundle = await self.fetch_bundle(handle, one_time_prekey=False)
            await self.e2ee.learn_bundle(handle, bundle)
        return await self.e2ee.safety_number(handle)

    async def verify(self, handle: str, expected: str | None = None) -> SafetyNumber:
        """Mark verified; with ``expected`` (the number the user compared), only if the key
        hasn't changed since it was shown."""
        await self.safety_number(handle)
        return await self.e2ee.verify(handle, expected)

    async def accept_key(self, handle: str) -> SafetyNumber:
        await self.safety_number(handle)
        result = await self.e2ee.accept_key(handle)
        self._outbox_wake.set()
        return result

    async def set_birthdate(self, birthdate: date) -> str:
        """Re-declare the birth date (only to a younger or equal band without age assurance)."""
        declaration = sign_declaration(
            self._identity.signing_key, self.handle, birthdate, self._clock()
        )
        rid = new_message_id()
        outcome = await self._done(
            SetBirthdate(rid=rid, birthdate=birthdate, declaration=declaration), rid
        )
        self.profile.set_birthdate(birthdate)
        await self.e2ee.declared(declaration.band, declaration.declared_at)
        return outcome

    # --- the connection -------------------------------------------------------------

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
        for future in [*self._pending.values(), *self._requests.values()]:
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        self._requests.clear()

    async def _connect_once(self) -> None:
        assert self._session is not None
        url = websocket_url(self.profile.server)
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
            sender = asyncio.create_task(self._send_outbox(ws))
            try:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await self._on_text(ws, msg.data)
                    elif msg.type == aiohttp.WSMsgType.ERROR:
                        break
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            if self._fatal is not None:
                code, self._fatal = self._fatal, None
                raise ClientError(code)

    _fatal: str | None = None

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
        signed = identity_messages.auth_message(challenge.relay_id, challenge.nonce, self.handle)
        await ws.send_str(
            encode_frame(Auth(handle=self.handle, signature=self._identity.sign(signed)))
        )
        reply = await self._receive_frame(ws)
        if isinstance(reply, Error):
            raise ClientError(reply.code, reply.message)
        if not isinstance(reply, Ready):
            raise ClientError("protocol_error", f"expected ready, got {type(reply).__name__}")

    async def _send_outbox(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Publish prekeys if due, then send every pending message once per connection,
        oldest first, each encrypted (or checked for a downgrade) as it leaves."""
        self._sent_here = set()
        await self._publish_prekeys()
        while True:
            self._outbox_wake.clear()
            for message in await self.history.outbox():
                if message.msg_id in self._sent_here:
                    continue
                frame = await self._outbound(message)
                if frame is None:
                    continue
                await ws.send_str(encode_frame(frame))
                self._sent_here.add(message.msg_id)
            await self._outbox_wake.wait()

    # --- end-to-end encryption (issue #4; PROTOCOL.md §6.4) ---------------------------

    async def redeclare(self) -> str:
        """Re-sign this account's age declaration for the band it has today."""
        declaration = sign_declaration(
            self._identity.signing_key, self.handle, self.profile.data.birthdate, self._clock()
        )
        rid = new_message_id()
        outcome = await self._done(Redeclare(rid=rid, declaration=declaration), rid)
        await self.e2ee.declared(declaration.band, declaration.declared_at)
        return outcome

    async def _keep_declaration_fresh(self) -> None:
        """Peers trust a minor's declaration only while it is recent (client.e2ee): re-sign
        ours when it is old or our band changed (a birthday)."""
        own = band(self.profile.data.birthdate, self._clock().date())
        if not await self.e2ee.redeclaration_due(own):
            return
        try:
            await self.redeclare()
        except ClientError as exc:  # e.g. an administrator changed our birth date
            log.warning("re-declaring the age band failed: %s", exc)

    async def _publish_prekeys(self) -> None:
        await self._keep_declaration_fresh()
        try:
            signed, one_time = await self.e2ee.prekeys_due()
            if signed is not None or one_time:
                await self.upload_prekeys(signed, one_time)
                await self.e2ee.mark_published(signed, bool(one_time))
            self.prekeys_published.set()
        except ClientError as exc:  # tried again on the next connection
            log.warning("publishing prekeys failed: %s", exc)

    async def _top_up_prekeys(self) -> None:
        if self._topping_up:  # one at a time: several `prekeys_low` may arrive together
            return
        self._topping_up = True
        try:
            await self.upload_prekeys(None, await self.e2ee.new_one_time_prekeys(ONE_TIME_BATCH))
        except ClientError as exc:
            log.warning("topping up one-time prekeys failed: %s", exc)
        finally:
            self._topping_up = False

    def _in_background(self, work: asyncio.Future[None] | asyncio.Task[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _outbound(self, message: HistoryMessage) -> Send | None:
        """The frame for an outbox message in the conversation's current mode, or None if
        it can't leave now (refused: marked failed; relay unreachable: stays pending)."""
        peer = message.recipient
        try:
            record = await self.e2ee.peer(peer)
            if record is not None and record.send_blocked:
                raise ClientError("safety_number_changed")
            has_session = await self.e2ee.has_session(peer)
            bundle = None
            if (
                record is None
                or record.mode is None  # first contact, or the relay's mode is to be asked
                or (record.mode == "visible" and record.declared_band is None)
                or (record.mode == "e2ee" and not has_session)
            ):
                # With a session, only the mode and declaration are wanted: no one-time key.
                bundle = await self.fetch_bundle(peer, one_time_prekey=not has_session)
                record = await self.e2ee.learn_bundle(peer, bundle)
            if record.mode == "visible":
                self.e2ee.check_visible(record)  # fail closed: DESIGN.md "Encryption modes"
                await self.history.set_mode(message.msg_id, self.handle, "visible")
                return Send(id=message.msg_id, to=peer, mode="visible", body=message.body)
            out = await self.e2ee.encrypt(peer, message.body, bundle)
        except ClientError as exc:
            if exc.code in TRANSIENT_CODES:
                return None
            await self._refused(message, exc.code, exc.message)
            return None
        await self.history.set_mode(message.msg_id, self.handle, "e2ee")
        return Send(
            id=message.msg_id, to=peer, mode="e2ee", body=out.body, commitment=out.commitment
        )

    async def _refused(self, message: HistoryMessage, code: str, reason: str) -> None:
        """A final refusal: the message is marked failed and whoever waits is told."""
        self._mode_retried.discard(message.msg_id)
        await self.history.mark_failed(message.msg_id, self.handle, code)
        message = await self.history.get(self.handle, message.msg_id) or message
        await self._tell_refused(message, code, reason)

    async def _tell_refused(self, message: HistoryMessage, code: str, reason: str) -> None:
        future = self._pending.pop(message.msg_id, None)
        if future is not None and not future.done():
            future.set_exception(ClientError(code, reason))
        await self._events.put(MessageRefused(message, code, reason))

    async def _local_event(
        self, peer: str, code: str, text: str, msg_id: str | None = None
    ) -> None:
        """A `system` line this client adds itself (a key change, an undecryptable message)."""
        stored = await self.history.add_incoming(
            sender="agechat",
            msg_id=msg_id or new_message_id(),
            recipient=self.handle,
            conversation=conversation_id(self.handle, peer),
            kind="system",
            mode="e2ee",
            body=text,
            sent_at=self._clock(),
            received_at=self._clock(),
            code=code,
        )
        if stored is not None:
            await self._events.put(MessageReceived(stored))

    async def _key_changed(self, peer: str, was_verified: bool) -> None:
        text = f"@{peer}'s safety number changed: their key is new. " + (
            "You had verified them, so sending is paused until you verify the new safety "
            "number (or accept the new key)."
            if was_verified
            else "Compare safety numbers to be sure it is really them."
        )
        await self._local_event(peer, "key_changed", text)

    async def _on_text(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> None:
        try:
            frame = decode_relay_frame(text)
        except FrameError as exc:
            log.warning("undecodable frame from relay: %s", exc)
            await self._events.put(RelayError(code="protocol_error", message=str(exc)))
            return
        if isinstance(frame, Deliver):
            await self._on_deliver(ws, frame)
        elif isinstance(frame, Accepted):
            await self._on_accepted(frame)
        elif isinstance(frame, Error):
            await self._on_error(frame)
        elif isinstance(frame, SyncedFrame):
            self.synced.set()
            await self._events.put(Synced())
        elif isinstance(frame, Delivered):
            if await self.history.mark_delivered(frame.id, self.handle):
                message = await self.history.get(self.handle, frame.id)
                if message is not None:
                    await self._events.put(MessageDelivered(message))
        elif isinstance(frame, PrekeysLow):
            # Not awaited here: the upload's answer arrives through this same receive loop.
            log.debug("relay reports %d one-time prekeys left", frame.remaining)
            self._in_background(self._top_up_prekeys())
        elif isinstance(frame, Done | ContactsResult | SearchResult | Bundle):
            future = self._requests.pop(frame.rid, None)
            if future is not None and not future.done():
                future.set_result(frame)
        else:
            await self._events.put(
                RelayError(code="protocol_error", message=f"unexpected {type(frame).__name__}")
            )

    async def _on_deliver(self, ws: aiohttp.ClientWebSocketResponse, frame: Deliver) -> None:
        if frame.kind == "message":
            stored = await self._incoming_message(frame)
        else:
            stored = await self._incoming_event(frame)
        # Acknowledged once stored (or deliberately dropped): a redelivery is acked again.
        await ws.send_str(encode_frame(Ack(refs=[MessageRef(sender=frame.sender, id=frame.id)])))
        if stored is not None:
            await self._events.put(MessageReceived(stored))

    async def _incoming_message(self, frame: Deliver) -> HistoryMessage | None:
        """Store a peer's message, decrypted if e2ee; None if dropped or already stored."""
        if frame.to != self.handle or frame.sender in (self.handle, RELAY_HANDLE):
            log.warning("dropped a message not for this account from=%s", frame.sender)
            return None
        if await self.history.get(frame.sender, frame.id) is not None:
            return None  # a redelivery of what is already stored
        # The conversation is always ours with the sender, whatever the relay labels it.
        conversation = conversation_id(self.handle, frame.sender)
        if frame.mode == "visible":
            if self.e2ee.expects_encryption(await self.e2ee.peer(frame.sender)):
                await self._drop(
                    frame,
                    "plaintext_refused",
                    "arrived unencrypted in a chat between adults, so it was dropped",
                )
                return None
            return await self._store_incoming(frame, conversation, frame.body, None)
        commitment, tag = frame.commitment, frame.franking_tag
        if commitment is None or tag is None:
            await self._drop(frame, "undecryptable", "came without its franking data")
            return None
        stored: list[HistoryMessage | None] = []

        async def keep(result: Decrypted) -> None:
            evidence = FrankingEvidence(result.franking_key, commitment, tag, frame.sent_at)
            stored.append(await self._store_incoming(frame, conversation, result.text, evidence))

        try:
            await self.e2ee.decrypt(frame.sender, frame.body, commitment, keep)
        except CryptoError as exc:
            await self._drop(frame, "undecryptable", f"could not be decrypted ({exc.code})")
            return None
        await self.e2ee.note_mode(frame.sender, "e2ee")
        return stored[0] if stored else None

    async def _incoming_event(self, frame: Deliver) -> HistoryMessage | None:
        peer = peer_of(frame.conversation, self.handle)
        if frame.sender != RELAY_HANDLE or peer is None:
            log.warning("dropped a malformed relay event from=%s", frame.sender)
            return None
        if frame.code == "band_changed":
            await self.e2ee.forget_declaration(peer)  # their declaration may be stale now
        elif frame.code in MODE_EVENTS:
            await self.e2ee.note_mode(peer, None)
        return await self._store_incoming(frame, frame.conversation, frame.body, None)

    async def _store_incoming(
        self,
        frame: Deliver,
        conversation: str,
        body: str,
        franking: FrankingEvidence | None,
    ) -> HistoryMessage | None:
        return await self.history.add_incoming(
            sender=frame.sender,
            msg_id=frame.id,
            recipient=self.handle,
            conversation=conversation,
            kind=frame.kind,
            mode=frame.mode,
            body=body,
            sent_at=frame.sent_at,
            received_at=self._clock(),
            code=frame.code,
            request=frame.request,
            franking=franking,
        )

    async def _drop(self, frame: Deliver, code: str, why: str) -> None:
        log.info("dropped a message from=%s id=%s: %s", frame.sender, frame.id, code)
        await self._local_event(
            frame.sender,
            code,
            f"A message from @{frame.sender} {why}.",
            msg_id=f"{code}-{frame.id}",
        )

    async def _on_accepted(self, frame: Accepted) -> None:
        self._mode_retried.discard(frame.id)
        await self.history.mark_sent(frame.id, self.handle, frame.sent_at)
        message = await self.history.get(self.handle, frame.id)
        if message is None:
            return
        future = self._pending.pop(frame.id, None)
        if future is not None and not future.done():
            future.set_result(message)
        await self._events.put(MessageAccepted(message))

    async def _on_error(self, frame: Error) -> None:
        request = self._requests.pop(frame.ref, None) if frame.ref else None
        if request is not None:
            if not request.done():
                request.set_exception(ClientError(frame.code, frame.message))
            return
        if frame.ref is None:
            if frame.code in FATAL_CLOSE:
                self._fatal = frame.code
            await self._events.put(RelayError(code=frame.code, message=frame.message))
            return
        message = await self.history.get(self.handle, frame.ref)
        if message is None:
            return
        if frame.code == "mode_mismatch" and frame.ref not in self._mode_retried:
            # The conversation's mode changed under us: ask the relay again, resend once.
            self._mode_retried.add(frame.ref)
            await self.e2ee.note_mode(message.recipient, None)
            self._sent_here.discard(frame.ref)
            self._outbox_wake.set()
            return
        if frame.code not in RETRYABLE_REFUSALS:
            await self._refused(message, frame.code, frame.message)
            return
        # Nothing was stored: send it again on this connection, after a pause.
        self._sent_here.discard(frame.ref)
        asyncio.get_running_loop().call_later(RETRY_DELAY_SECONDS, self._outbox_wake.set)
        await self._tell_refused(message, frame.code, frame.message)


def _reported(message: HistoryMessage, franking: FrankingEvidence | None) -> ReportedMessage:
    """A message as a report attaches it; a received e2ee message brings its franking
    evidence (and its exact ``sent_at``) so the relay can verify the text (PROTOCOL.md §6.4)."""
    return ReportedMessage(
        id=message.msg_id,
        sender=message.sender,
        to=message.recipient,
        text=message.body,
        sent_at=franking.sent_at if franking else message.sent_at,
        franking_key=franking.franking_key if franking else None,
        commitment=franking.commitment if franking else None,
        franking_tag=franking.franking_tag if franking else None,
    )
