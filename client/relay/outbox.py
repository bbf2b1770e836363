"""The outbox: outgoing messages the relay has not confirmed yet, and who waits for them.

A message is in history as ``pending`` before anything touches the network. On every
connection each pending message is sent once, oldest first, in the form the e2ee path
gives it as it leaves; the relay's ids make a resend idempotent (PROTOCOL.md §5). The
relay's answer settles it: ``accepted`` (stored), a final refusal (marked failed), or
``internal_error`` (nothing was stored: sent again after a pause). A ``mode_mismatch`` is
retried once, after asking the relay for the conversation's mode again.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import msgspec

from client.attachments import take_copy
from client.errors import ClientError
from client.events import ClientEvent, MessageAccepted, MessageDelivered, MessageRefused
from client.history import History, HistoryMessage
from client.relay.connection import HANDSHAKE_TIMEOUT, Connection
from client.relay.e2ee_path import EndToEndPath
from protocol.codec import encode_frame
from protocol.frames import Accepted, Delivered, Error, Send, conversation_id
from protocol.group_frames import GroupSend, GroupView
from protocol.groups import group_conversation, group_of
from protocol.ids import RANDOM_BYTES, time_ordered_id
from protocol.limits import MAX_BODY_CHARS, MAX_FRAME_BYTES, MAX_WEBSOCKET_MESSAGE_BYTES

#: The one refusal after which a resend may succeed (nothing was stored); every other
#: refusal of a message is final and the message is marked failed, not retried.
RETRYABLE_REFUSALS = frozenset({"internal_error"})
#: Pause before resending a message the relay failed to store.
RETRY_DELAY_SECONDS = 1.0
HANDLE_PATTERN = re.compile(r"[a-z0-9_]{3,32}")
#: Refusals of a message that leave it in the outbox (the relay or network may recover).
TRANSIENT_CODES = frozenset(
    {"timeout", "relay_unreachable", "internal_error", "no_prekeys", "upload_failed"}
)
#: Base64 of an envelope is about 4/3 of the text plus headers, so an e2ee message's text
#: must leave room: the longest text that still fits the body limit once encrypted.
MAX_E2EE_TEXT_BYTES = (MAX_BODY_CHARS // 4) * 3 - 256


def new_message_id() -> str:
    """Unique without coordination (80 random bits per millisecond), and in the order they
    were made (protocol/ids.py says why); also used for request ids."""
    return time_ordered_id(time.time_ns() // 1_000_000, secrets.token_bytes(RANDOM_BYTES))


class Outbox:
    def __init__(
        self,
        handle: str,
        history: History,
        events: asyncio.Queue[ClientEvent],
        *,
        path: EndToEndPath,
        connection: Connection,
        clock: Callable[[], datetime],
        profile_dir: Path,
        group_view: Callable[[str], Awaitable[GroupView]] | None = None,
    ) -> None:
        self._handle = handle
        #: A group as the relay has it now (to know its mode and members before sending).
        self._group_view = group_view
        self._profile_dir = profile_dir
        self._history = history
        self._events = events
        self._path = path
        self._connection = connection
        self._clock = clock
        self._wake = asyncio.Event()
        self._pending: dict[str, asyncio.Future[HistoryMessage]] = {}
        self._sent_here: set[str] = set()  # outbox ids sent on the current connection
        self._mode_retried: set[str] = set()
        self._reuploaded: set[str] = set()

    def wake(self) -> None:
        """Look at the outbox again (something that kept a message back may have changed)."""
        self._wake.set()

    # --- adding and waiting ---------------------------------------------------------

    def _check_sendable(self, to: str, text: str) -> None:
        """Refuse here what the relay would refuse as malformed, before it enters the outbox
        (a message the relay can't decode would otherwise be resent forever)."""
        if not HANDLE_PATTERN.fullmatch(to):
            raise ClientError("invalid_handle", f"{to!r} is not a handle.")
        if to == self._handle:
            raise ClientError("cannot_target_self")
        frame = Send(id=new_message_id(), to=to, mode="visible", body=text)
        size = len(encode_frame(frame).encode())
        too_long = len(text) > MAX_BODY_CHARS or len(text.encode()) > MAX_E2EE_TEXT_BYTES
        if too_long or size > MAX_FRAME_BYTES:
            raise ClientError(
                "message_too_large",
                f"The message is too long ({size} bytes encoded, limit {MAX_FRAME_BYTES}).",
            )

    async def add(self, to: str, text: str, file: Path | None = None) -> HistoryMessage:
        """Put a message in the outbox (durably) and wake the sender; returns at once. A
        ``file`` is copied under the profile first."""
        self._check_sendable(to, text)
        msg_id = new_message_id()
        attachment = None if file is None else take_copy(file, self._profile_dir, msg_id)
        message = await self._history.add_outgoing(
            sender=self._handle,
            msg_id=msg_id,
            recipient=to,
            conversation=conversation_id(self._handle, to),
            mode=await self._path.mode_before_sending(to),
            body=text,
            created_at=self._clock(),
            attachment=attachment,
        )
        self._future_for(message.msg_id)
        self._wake.set()
        return message

    async def add_group(self, group: str, text: str) -> HistoryMessage:
        """Put a message to a group in the outbox; returns at once (PROTOCOL.md §6.8)."""
        if len(text) > MAX_BODY_CHARS or len(text.encode()) > MAX_E2EE_TEXT_BYTES:
            raise ClientError("message_too_large", "The message is too long.")
        message = await self._history.add_outgoing(
            sender=self._handle,
            msg_id=new_message_id(),
            recipient=group,
            conversation=group_conversation(group),
            mode="visible",  # decided when it leaves, from the group's mode then
            body=text,
            created_at=self._clock(),
        )
        self._future_for(message.msg_id)
        self._wake.set()
        return message

    async def wait_accepted(
        self, msg_id: str, timeout: float = HANDSHAKE_TIMEOUT
    ) -> HistoryMessage:
        """Return the message once the relay has stored it; raise its refusal otherwise."""
        if (gave_up := self._connection.gave_up) is not None:
            raise gave_up
        future = self._future_for(msg_id)  # before looking, so an acceptance can't slip by
        known = await self._history.get(self._handle, msg_id)
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

    async def drain(self, timeout: float = HANDSHAKE_TIMEOUT) -> int:
        """Wait (while connected) until the relay has answered every pending message.

        Returns how many are still pending afterwards.
        """
        pending = await self._history.outbox()
        if pending and self._connection.is_connected:
            waits = [self.wait_accepted(m.msg_id, timeout) for m in pending]
            await asyncio.gather(*waits, return_exceptions=True)
        return len(await self._history.outbox())

    def _future_for(self, msg_id: str) -> asyncio.Future[HistoryMessage]:
        future = self._pending.get(msg_id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            # Mark a refusal as seen even when nobody awaits it (no "never retrieved" noise).
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._pending[msg_id] = future
        return future

    def fail_waiters(self, error: ClientError) -> None:
        """No more connections are coming: whoever waits gets the reason now."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    def close(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ClientError("relay_unreachable", "The client was closed."))

    # --- sending, once per connection -----------------------------------------------

    def new_connection(self) -> None:
        self._sent_here = set()

    async def send_pending(self) -> None:
        """Send every pending message once on this connection, oldest first, then wait to
        be woken (a new message, a retry, an accepted key) and send what is new."""
        while True:
            self._wake.clear()
            for message in await self._history.outbox():
                if message.msg_id in self._sent_here:
                    continue
                frame = await self._outbound(message)
                if frame is None:
                    continue
                await self._connection.send(frame)
                self._sent_here.add(message.msg_id)
            await self._wake.wait()

    async def _outbound(self, message: HistoryMessage) -> Send | GroupSend | None:
        """The frame for ``message``, or None if it can't leave now (refused: marked failed;
        relay unreachable: stays pending)."""
        try:
            group = group_of(message.conversation)
            if group is None:
                return await self._path.outbound(message)
            if self._group_view is None:
                raise ClientError("unknown_group")
            frame = await self._path.outbound_group(message, await self._group_view(group))
            if len(encode_frame(frame).encode()) > MAX_WEBSOCKET_MESSAGE_BYTES:
                # One envelope per member must fit one frame (§6.8): shorter, or fewer.
                raise ClientError("message_too_large", "Too long for a group this size.")
            return frame
        except ClientError as exc:
            if exc.code in TRANSIENT_CODES:
                return None
            await self._refused(message, exc.code, exc.message)
            return None

    # --- the relay's answers --------------------------------------------------------

    async def on_accepted(self, frame: Accepted) -> None:
        self._mode_retried.discard(frame.id)
        await self._history.mark_sent(frame.id, self._handle, frame.sent_at, request=frame.request)
        message = await self._history.get(self._handle, frame.id)
        if message is None:
            return
        future = self._pending.pop(frame.id, None)
        if future is not None and not future.done():
            future.set_result(message)
        await self._events.put(MessageAccepted(message))

    async def on_delivered(self, frame: Delivered) -> None:
        if await self._history.mark_delivered(frame.id, self._handle):
            message = await self._history.get(self._handle, frame.id)
            if message is not None:
                await self._events.put(MessageDelivered(message))

    async def on_refusal(self, frame: Error) -> None:
        """An `error` whose ``ref`` names one of our messages (the connection has already
        taken those that answer a request or concern the connection)."""
        if frame.ref is None:
            return
        message = await self._history.get(self._handle, frame.ref)
        if message is None:
            return
        changed = frame.code in ("mode_mismatch", "group_members_changed")
        if changed and frame.ref not in self._mode_retried:
            # The conversation's mode (or the group's members) changed under us: ask the
            # relay again, resend once.
            self._mode_retried.add(frame.ref)
            if group_of(message.conversation) is None:
                await self._path.forget_mode(message.recipient)
            self._sent_here.discard(frame.ref)
            self._wake.set()
            return
        if (
            frame.code == "unknown_attachment"
            and message.attachment is not None
            and frame.ref not in self._reuploaded
        ):
            # The upload expired before the message left (a day unsent): upload it again
            # from the copy under the profile, once.
            self._reuploaded.add(frame.ref)
            fresh = msgspec.structs.replace(
                message.attachment,
                uploaded=False,
                uploaded_as=None,
                key=None,
                encrypted_path=None,
            )
            await self._history.set_attachment(message.msg_id, self._handle, fresh)
            self._sent_here.discard(frame.ref)
            self._wake.set()
            return
        if frame.code not in RETRYABLE_REFUSALS:
            await self._refused(message, frame.code, frame.message)
            return
        # Nothing was stored: send it again on this connection, after a pause.
        self._sent_here.discard(frame.ref)
        asyncio.get_running_loop().call_later(RETRY_DELAY_SECONDS, self._wake.set)
        await self._tell_refused(message, frame.code, frame.message)

    async def _refused(self, message: HistoryMessage, code: str, reason: str) -> None:
        """A final refusal: the message is marked failed and whoever waits is told."""
        self._mode_retried.discard(message.msg_id)
        await self._history.mark_failed(message.msg_id, self._handle, code, reason)
        message = await self._history.get(self._handle, message.msg_id) or message
        await self._tell_refused(message, code, reason)

    async def _tell_refused(self, message: HistoryMessage, code: str, reason: str) -> None:
        future = self._pending.pop(message.msg_id, None)
        if future is not None and not future.done():
            future.set_exception(ClientError(code, reason))
        await self._events.put(MessageRefused(message, code, reason))
