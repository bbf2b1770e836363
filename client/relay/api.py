"""RelayClient: one account's client of the relay, and its public request API.

It composes the parts, each owning one thing: the connection and its reconnects
(``connection``), the outbox (``outbox``), the e2ee send/receive path (``e2ee_path``),
a moderator's requests (``moderation``) and guardian links (``guardians``).
What it adds itself is the API its users call: the lifecycle, sending, and the requests
of PROTOCOL.md §6.2–6.3 (contacts, search, blocks, reports, birth dates and declarations,
key bundles, prekeys, safety numbers), plus the one table that routes the relay's frames.

The client persists before it acts: an outgoing message is in history (``pending``)
before it is sent, an incoming one is in history before it is acknowledged. So the relay
deletes only what the client has, and the client resends whatever the relay has not
confirmed (PROTOCOL.md §5).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from client.declaration import sign_declaration
from client.e2ee import SafetyNumber
from client.errors import ClientError
from client.events import ClientEvent, Disconnected, RelayError
from client.history import FrankingEvidence, History, HistoryMessage
from client.profile import Identity, Profile
from client.relay.blobs import BlobTransfer
from client.relay.connection import HANDSHAKE_TIMEOUT, Connection
from client.relay.e2ee_path import EndToEndPath
from client.relay.groups import Groups
from client.relay.guardians import Guardians
from client.relay.moderation import Moderation
from client.relay.outbox import Outbox, new_message_id
from client.timeutil import local_utc_offset, utc_now
from protocol.frames import (
    Accepted,
    Block,
    Bundle,
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
    OneTimePrekey,
    Person,
    PrekeysLow,
    Redeclare,
    RelayFrame,
    Report,
    ReportedMessage,
    Search,
    SearchResult,
    SetBirthdate,
    SignedPrekey,
    Unblock,
    UploadPrekeys,
    conversation_id,
)
from protocol.groups import group_conversation


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
        utc_offset: Callable[[], timedelta] = local_utc_offset,
    ) -> None:
        self.profile = profile
        self._identity = identity
        self.history = history
        self._clock = clock
        self._events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._connection = Connection(
            profile,
            identity,
            self._events,
            reconnect=reconnect,
            max_backoff=max_backoff,
            dispatch=self._dispatch,
            while_connected=self._while_connected,
            on_gone=self._gone,
            utc_offset=utc_offset,
            clock=clock,
        )
        #: Attachment bytes over the relay's signed HTTP routes (PROTOCOL.md §6.6).
        self.blobs = BlobTransfer(
            profile.server,
            profile.handle,
            identity.sign,
            self._connection.relay_id,
            lambda: clock() + self._connection.clock_offset,
        )
        self._path = EndToEndPath(
            profile,
            identity,
            history,
            self._events,
            requests=self,
            send=self._connection.send,
            clock=clock,
            new_id=new_message_id,
            blobs=self.blobs,
        )
        self.e2ee = self._path.e2ee
        #: A moderator's requests (PROTOCOL.md §6.5); refused `forbidden` without a role.
        self.moderation = Moderation(self._connection)
        #: Guardian links: invite, accept, unlink, list, approvals (PROTOCOL.md §6.7).
        self.guardians = Guardians(self._connection)
        #: Groups (PROTOCOL.md §6.8): membership requests; messages go by ``send_group``.
        self.groups = Groups(self._connection)
        self._outbox = Outbox(
            profile.handle,
            history,
            self._events,
            path=self._path,
            connection=self._connection,
            clock=clock,
            profile_dir=profile.directory,
            group_view=self.groups.get,
        )
        # The one routing table for the relay's frames (answers to requests, `synced` and
        # errors about the connection itself are the connection's own).
        self._handlers: dict[type[RelayFrame], Callable[[Any], Awaitable[None]]] = {
            Deliver: self._path.on_deliver,
            Accepted: self._outbox.on_accepted,
            Delivered: self._outbox.on_delivered,
            Error: self._outbox.on_refusal,
            PrekeysLow: self._path.on_prekeys_low,
        }

    @property
    def handle(self) -> str:
        return self.profile.handle

    @property
    def is_connected(self) -> bool:
        return self._connection.is_connected

    @property
    def last_disconnect(self) -> Disconnected | None:
        return self._connection.last_disconnect

    @property
    def synced(self) -> asyncio.Event:
        """Set once the backlog queued at the relay when this connection opened arrived."""
        return self._connection.synced

    @property
    def prekeys_published(self) -> asyncio.Event:
        """Set once this connection's prekeys are published (or found already published)."""
        return self._path.prekeys_published

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> RelayClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        await self._path.open()
        self._connection.start()

    async def close(self) -> None:
        await self._connection.stop()
        await self._path.stop_background()
        await self._connection.close_session()
        await self._path.close_store()
        self._outbox.close()

    async def reconnect_now(self) -> None:
        """Drop the current connection; the client reconnects and resends its outbox."""
        await self._connection.reconnect_now()

    async def wait_connected(self, timeout: float = HANDSHAKE_TIMEOUT) -> None:
        """Return once authenticated; raise the reason if the client gave up first."""
        await self._connection.wait_connected(timeout)

    async def events(self) -> AsyncIterator[ClientEvent]:
        while True:
            yield await self._events.get()

    async def next_event(self, timeout: float | None = None) -> ClientEvent | None:
        """The next event, or None after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._events.get(), timeout)
        except TimeoutError:
            return None

    async def _while_connected(self) -> None:
        """On each connection: publish prekeys if due, then send the outbox."""
        self._outbox.new_connection()
        await self._path.publish_prekeys()
        await self._outbox.send_pending()

    def _gone(self, error: ClientError) -> None:
        self._outbox.fail_waiters(error)

    async def _dispatch(self, frame: RelayFrame) -> None:
        handler = self._handlers.get(type(frame))
        if handler is None:
            await self._events.put(
                RelayError(code="protocol_error", message=f"unexpected {type(frame).__name__}")
            )
            return
        await handler(frame)

    # --- sending --------------------------------------------------------------------

    async def send(self, to: str, text: str) -> HistoryMessage:
        """Put a message in the outbox (durably) and hand it to the connection.

        Returns at once; ``wait_accepted`` waits for the relay to store it.
        """
        return await self._outbox.add(to, text)

    async def send_group(self, group: str, text: str) -> HistoryMessage:
        """Put a message to a group in the outbox, like ``send``: each member gets one copy,
        in the group's mode when it leaves (PROTOCOL.md §6.8)."""
        return await self._outbox.add_group(group, text)

    async def send_file(self, to: str, path: Path, text: str = "") -> HistoryMessage:
        """Put a message with the file at ``path`` in the outbox: the file is copied under
        the profile first (so a crash loses nothing), uploaded when the message leaves —
        encrypted on this device in an `e2ee` chat — and named by the message."""
        return await self._outbox.add(to, text, file=path)

    async def wait_accepted(
        self, msg_id: str, timeout: float = HANDSHAKE_TIMEOUT
    ) -> HistoryMessage:
        """Return the message once the relay has stored it; raise its refusal otherwise."""
        return await self._outbox.wait_accepted(msg_id, timeout)

    async def drain_outbox(self, timeout: float = HANDSHAKE_TIMEOUT) -> int:
        """Wait (while connected) until the relay has answered every pending message.

        Returns how many are still pending afterwards.
        """
        return await self._outbox.drain(timeout)

    # --- requests: contacts, search, blocks, reports, birth date (PROTOCOL.md §6.2) ---

    async def _done(self, frame: Frame, rid: str) -> str:
        reply = await self._connection.request(frame, rid)
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
        reply = await self._connection.request(ContactsList(rid=rid), rid)
        if not isinstance(reply, ContactsResult):
            raise ClientError("protocol_error", f"expected contacts, got {type(reply).__name__}")
        return reply.contacts

    async def search(self, query: str) -> list[Person]:
        rid = new_message_id()
        reply = await self._connection.request(Search(rid=rid, query=query), rid)
        if not isinstance(reply, SearchResult):
            raise ClientError("protocol_error", f"expected results, got {type(reply).__name__}")
        return reply.results

    async def block(self, handle: str) -> str:
        rid = new_message_id()
        return await self._done(Block(rid=rid, handle=handle), rid)

    async def unblock(self, handle: str) -> str:
        rid = new_message_id()
        return await self._done(Unblock(rid=rid, handle=handle), rid)

    async def report(
        self, handle: str, reason: str, last: int = 5, group: str | None = None
    ) -> list[HistoryMessage]:
        """Report ``handle``, attaching the last ``last`` messages of our conversation as this
        client has them — or, with ``group``, the last ``last`` that ``handle`` sent us in
        that group (each a pairwise copy, verified like a direct message). Returns what was
        attached."""
        if group is None:
            messages = await self.history.last_messages(conversation_id(self.handle, handle), last)
        else:
            recent = await self.history.last_messages(group_conversation(group), 500)
            messages = [m for m in recent if m.sender == handle and m.kind == "message"][-last:]
        evidence = [
            _reported(m, await self.history.franking_evidence(m.sender, m.msg_id)) for m in messages
        ]
        rid = new_message_id()
        await self._done(Report(rid=rid, handle=handle, reason=reason, messages=evidence), rid)
        return messages

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

    async def redeclare(self) -> str:
        """Re-sign this account's age declaration for the band it has today."""
        declaration = sign_declaration(
            self._identity.signing_key, self.handle, self.profile.data.birthdate, self._clock()
        )
        rid = new_message_id()
        outcome = await self._done(Redeclare(rid=rid, declaration=declaration), rid)
        await self.e2ee.declared(declaration.band, declaration.declared_at)
        return outcome

    # --- keys (issue #4; PROTOCOL.md §6.3–6.4) --------------------------------------

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
        reply = await self._connection.request(frame, rid)
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
        self._outbox.wake()
        return result


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
        # A file's digest is in the commitment (PROTOCOL.md §6.6.1); the file stays here.
        attachment_sha256=(
            bytes.fromhex(message.attachment.sha256)
            if franking and message.attachment and message.attachment.sha256
            else None
        ),
    )
