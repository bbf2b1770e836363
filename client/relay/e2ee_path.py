"""The e2ee send/receive path: what a message becomes as it leaves and as it arrives.

Leaving, a message goes out in its conversation's current mode: ``visible`` only after
the downgrade check (THREAT_MODEL.md "Downgrade": fail closed), otherwise encrypted, with
the peer's bundle fetched when there is no session or the mode is to be asked again.
Arriving, a delivery is checked, decrypted if e2ee, stored in history, announced and
acknowledged; a relay event may make a peer's mode or declaration stale. Around that path:
keeping our prekeys and age declaration published, and the `system` lines this client adds
itself (a key change, a dropped message). ``client.e2ee`` does the cryptography; this
module decides when to call it, with what the relay said (PROTOCOL.md §6.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

import msgspec

from client.attachments import LocalAttachment
from client.crypto_store import STORE_FILE, CryptoStore
from client.e2ee import ONE_TIME_BATCH, Decrypted, EndToEnd
from client.errors import ClientError
from client.events import ClientEvent, MessageReceived
from client.history import FrankingEvidence, History, HistoryMessage, peer_of
from client.profile import Identity, Profile
from client.relay.attachment_path import RetryLater, fetch_incoming, prepare_outgoing
from client.relay.blobs import BlobTransfer
from protocol.crypto import CryptoError, IdentityKeyPair
from protocol.frames import (
    RELAY_HANDLE,
    Ack,
    Bundle,
    Deliver,
    Frame,
    MessageRef,
    OneTimePrekey,
    PrekeysLow,
    Send,
    SignedPrekey,
    conversation_id,
)
from protocol.group_frames import GroupCopy, GroupSend, GroupView
from protocol.groups import group_of
from protocol.policy import band, is_minor

log = logging.getLogger("agechat.client")

#: Relay events after which the conversation's mode may have changed: ask again.
MODE_EVENTS = frozenset({"band_changed", "contact_accepted"})


class KeyRequests(Protocol):
    """The requests this path makes of the relay (``RelayClient`` provides them)."""

    async def fetch_bundle(self, handle: str, *, one_time_prekey: bool = True) -> Bundle: ...

    async def upload_prekeys(
        self, signed: SignedPrekey | None, one_time: list[OneTimePrekey]
    ) -> int: ...

    async def redeclare(self) -> str: ...


class EndToEndPath:
    def __init__(
        self,
        profile: Profile,
        identity: Identity,
        history: History,
        events: asyncio.Queue[ClientEvent],
        *,
        requests: KeyRequests,
        send: Callable[[Frame], Awaitable[None]],
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
        blobs: BlobTransfer,
    ) -> None:
        self._profile = profile
        self._blobs = blobs
        self._history = history
        self._events = events
        self._requests = requests
        self._send = send
        self._clock = clock
        self._new_id = new_id
        seed = bytes(identity.signing_key)
        self.e2ee = EndToEnd(
            CryptoStore(profile.directory / STORE_FILE, seed),
            IdentityKeyPair.from_seed(seed),
            profile.handle,
            own_band=lambda: band(self._profile.data.birthdate, self._clock().date()),
            clock=clock,
            on_key_change=self._key_changed,
        )
        #: Set once this connection's prekeys are published (or found already published).
        self.prekeys_published = asyncio.Event()
        self._topping_up = False  # one one-time prekey top-up at a time
        self._background: set[asyncio.Task[None]] = set()

    @property
    def handle(self) -> str:
        return self._profile.handle

    async def open(self) -> None:
        await self.e2ee.store.open()

    async def stop_background(self) -> None:
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def close_store(self) -> None:
        await self.e2ee.store.close()

    # --- leaving --------------------------------------------------------------------

    async def mode_before_sending(self, peer: str) -> str:
        """The mode to record for a message not sent yet: it is decided when it leaves, and
        until then never claims more protection than is known."""
        known = await self.e2ee.peer(peer)
        return known.mode if known and known.mode else "visible"

    async def forget_mode(self, peer: str) -> None:
        """The relay says the conversation's mode changed: ask it again before sending."""
        await self.e2ee.note_mode(peer, None)

    async def outbound(self, message: HistoryMessage) -> Send:
        """The frame for an outbox message in the conversation's current mode; raises the
        ClientError that keeps it from leaving (``client.relay.outbox`` decides whether that
        is final)."""
        peer = message.recipient
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
            bundle = await self._requests.fetch_bundle(peer, one_time_prekey=not has_session)
            record = await self.e2ee.learn_bundle(peer, bundle)
        if record.mode == "visible":
            self.e2ee.check_visible(record)  # fail closed: THREAT_MODEL.md "Downgrade"
            await self._history.set_mode(message.msg_id, self.handle, "visible")
            send = Send(id=message.msg_id, to=peer, mode="visible", body=message.body)
            if message.attachment is not None:
                ref, _ = await prepare_outgoing(message, "visible", self._blobs, self._history)
                send = msgspec.structs.replace(send, attachment=ref)
            return send
        ref, inner = None, None
        if message.attachment is not None:
            ref, inner = await prepare_outgoing(message, "e2ee", self._blobs, self._history)
        out = await self.e2ee.encrypt(peer, message.body, bundle, attachment=inner)
        await self._history.set_mode(message.msg_id, self.handle, "e2ee")
        send = Send(
            id=message.msg_id, to=peer, mode="e2ee", body=out.body, commitment=out.commitment
        )
        return send if ref is None else msgspec.structs.replace(send, attachment=ref)

    async def outbound_group(self, message: HistoryMessage, view: GroupView) -> GroupSend:
        """The `group_send` for an outbox message to a group, in the group's mode now
        (PROTOCOL.md §6.8): `visible` only after checking, where it can, that a member under
        18 says so themselves; `e2ee` as one envelope per other member, each for that
        member's pairwise session with the group sealed inside."""
        others = [m for m in view.members if m.handle != self.handle and m.state == "member"]
        if view.mode == "visible":
            await self._check_group_visible(view)
            await self._history.set_mode(message.msg_id, self.handle, "visible")
            return GroupSend(id=message.msg_id, group=view.id, mode="visible", body=message.body)
        if view.hidden_members:
            # An e2ee group has no minor in it: a member hidden from us is a relay's lie.
            raise ClientError("protocol_error", "an encrypted group with hidden members")
        copies = []
        for member in others:
            bundle = await self._bundle_if_needed(member.handle)
            out = await self.e2ee.encrypt(member.handle, message.body, bundle, group=view.id)
            copies.append(GroupCopy(to=member.handle, body=out.body, commitment=out.commitment))
        await self._history.set_mode(message.msg_id, self.handle, "e2ee")
        return GroupSend(id=message.msg_id, group=view.id, mode="e2ee", copies=copies)

    async def _bundle_if_needed(self, peer: str) -> Bundle | None:
        record = await self.e2ee.peer(peer)
        if record is not None and record.send_blocked:
            raise ClientError("safety_number_changed")
        if record is not None and await self.e2ee.has_session(peer):
            return None
        bundle = await self._requests.fetch_bundle(peer, one_time_prekey=True)
        await self.e2ee.learn_bundle(peer, bundle)
        return bundle

    async def _check_group_visible(self, view: GroupView) -> None:
        """Fail closed where we can: a group is `visible` because someone in it is under 18,
        so one of them must say so in their own signed declaration. A minor we can't look
        up (hidden from us, or not a contact) can't be checked: the relay's word stands
        for them (docs/THREAT_MODEL.md "Groups")."""
        if is_minor(band(self._profile.data.birthdate, self._clock().date())):
            return
        for member in view.members:
            if not member.minor or member.handle == self.handle:
                continue
            try:
                bundle = await self._requests.fetch_bundle(member.handle, one_time_prekey=False)
            except ClientError:
                continue  # not ours to look up: try another
            record = await self.e2ee.learn_bundle(member.handle, bundle)
            self.e2ee.check_visible(record)  # a "minor" who never said so: refused
            return

    # --- arriving -------------------------------------------------------------------

    async def on_deliver(self, frame: Deliver) -> None:
        try:
            if frame.kind == "message":
                stored = await self._incoming_message(frame)
            else:
                stored = await self._incoming_event(frame)
        except RetryLater as exc:
            # Not stored, not acknowledged: the relay delivers it again next connection.
            log.warning("attachment from %s not fetched (%s); will retry", frame.sender, exc)
            return
        # Announced as it is stored, before the ack: if the connection dies while acking,
        # the redelivery is recognised as stored and dropped, so it must not be the only
        # chance to announce it (issue 9, defect 4).
        if stored is not None:
            await self._events.put(MessageReceived(stored))
        # Acknowledged once stored (or deliberately dropped): a redelivery is acked again.
        await self._send(Ack(refs=[MessageRef(sender=frame.sender, id=frame.id)]))

    async def _incoming_message(self, frame: Deliver) -> HistoryMessage | None:
        """Store a peer's message, decrypted if e2ee; None if dropped or already stored."""
        if frame.to != self.handle or frame.sender in (self.handle, RELAY_HANDLE):
            log.warning("dropped a message not for this account from=%s", frame.sender)
            return None
        if await self._history.get(frame.sender, frame.id) is not None:
            return None  # a redelivery of what is already stored
        group = group_of(frame.conversation)
        # The conversation is ours with the sender, or the group the relay says (an e2ee
        # copy's own plaintext must name the same group).
        conversation = frame.conversation if group else conversation_id(self.handle, frame.sender)
        if frame.mode == "visible":
            # A visible group message: the group's mode is the relay's to decide (and ours
            # to check when we write), not the pair's.
            if not group and self.e2ee.expects_encryption(await self.e2ee.peer(frame.sender)):
                await self._drop(
                    frame,
                    "plaintext_refused",
                    "arrived unencrypted in a chat between adults, so it was dropped",
                )
                return None
            attachment = await fetch_incoming(frame, self._profile.directory, self._blobs, None)
            return await self._store_incoming(frame, conversation, frame.body, None, attachment)
        commitment, tag = frame.commitment, frame.franking_tag
        if commitment is None or tag is None:
            await self._drop(frame, "undecryptable", "came without its franking data")
            return None
        stored: list[HistoryMessage | None] = []
        misplaced: list[bool] = []

        async def keep(result: Decrypted) -> None:
            if result.group != group:
                misplaced.append(True)  # a copy moved to another conversation: not stored
                return
            evidence = FrankingEvidence(result.franking_key, commitment, tag, frame.sent_at)
            # Fetched before anything is stored: a download that breaks off raises, and the
            # session state stays as it was for the redelivery.
            attachment = await fetch_incoming(
                frame, self._profile.directory, self._blobs, result.attachment
            )
            stored.append(
                await self._store_incoming(frame, conversation, result.text, evidence, attachment)
            )

        try:
            await self.e2ee.decrypt(frame.sender, frame.body, commitment, keep)
        except CryptoError as exc:
            await self._drop(frame, "undecryptable", f"could not be decrypted ({exc.code})")
            return None
        if misplaced:
            await self._drop(frame, "misplaced", "was not for the conversation it arrived in")
            return None
        if not group:
            await self.e2ee.note_mode(frame.sender, "e2ee")
        return stored[0] if stored else None

    async def _incoming_event(self, frame: Deliver) -> HistoryMessage | None:
        peer = peer_of(frame.conversation, self.handle)
        if frame.sender == RELAY_HANDLE and group_of(frame.conversation):
            return await self._store_incoming(frame, frame.conversation, frame.body, None)
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
        attachment: LocalAttachment | None = None,
    ) -> HistoryMessage | None:
        return await self._history.add_incoming(
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
            attachment=attachment,
        )

    async def _drop(self, frame: Deliver, code: str, why: str) -> None:
        log.info("dropped a message from=%s id=%s: %s", frame.sender, frame.id, code)
        await self._local_event(
            frame.sender,
            code,
            f"A message from @{frame.sender} {why}.",
            msg_id=f"{code}-{frame.id}",
        )

    async def _local_event(
        self, peer: str, code: str, text: str, msg_id: str | None = None
    ) -> None:
        """A `system` line this client adds itself (a key change, an undecryptable message)."""
        stored = await self._history.add_incoming(
            sender="agechat",
            msg_id=msg_id or self._new_id(),
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

    # --- keeping our keys and declaration published ---------------------------------

    async def publish_prekeys(self) -> None:
        await self._keep_declaration_fresh()
        try:
            signed, one_time = await self.e2ee.prekeys_due()
            if signed is not None or one_time:
                await self._requests.upload_prekeys(signed, one_time)
                await self.e2ee.mark_published(signed, bool(one_time))
            self.prekeys_published.set()
        except ClientError as exc:  # tried again on the next connection
            log.warning("publishing prekeys failed: %s", exc)

    async def _keep_declaration_fresh(self) -> None:
        """Peers trust a minor's declaration only while it is recent (client.e2ee): re-sign
        ours when it is old or our band changed (a birthday)."""
        own = band(self._profile.data.birthdate, self._clock().date())
        if not await self.e2ee.redeclaration_due(own):
            return
        try:
            await self._requests.redeclare()
        except ClientError as exc:  # e.g. an administrator changed our birth date
            log.warning("re-declaring the age band failed: %s", exc)

    async def on_prekeys_low(self, frame: PrekeysLow) -> None:
        # Not awaited here: the upload's answer arrives through this same receive loop.
        log.debug("relay reports %d one-time prekeys left", frame.remaining)
        self._in_background(self._top_up_prekeys())

    async def _top_up_prekeys(self) -> None:
        if self._topping_up:  # one at a time: several `prekeys_low` may arrive together
            return
        self._topping_up = True
        try:
            fresh = await self.e2ee.new_one_time_prekeys(ONE_TIME_BATCH)
            await self._requests.upload_prekeys(None, fresh)
        except ClientError as exc:
            log.warning("topping up one-time prekeys failed: %s", exc)
        finally:
            self._topping_up = False

    def _in_background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
