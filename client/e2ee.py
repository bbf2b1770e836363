"""End-to-end encryption for one account: prekeys, sessions, peer keys, the downgrade check.

This is the client side of issue #4, on top of the pure crypto core (``protocol.crypto``)
and the sealed store (``client.crypto_store``). It does no network I/O: the caller fetches
bundles and uploads prekeys (``client.relay``) and hands the results in.

- Sessions (X3DH §3, Double Ratchet §3): the first message to a peer runs X3DH against the
  peer's bundle; until the first reply arrives every message carries the X3DH initial
  header (so the first one may be lost). A session's state is saved *before* its ciphertext
  leaves (a crash can't make us reuse a chain key) and, on receipt, after the plaintext is
  in the history (a crash before that just decrypts the redelivery again). First messages
  already answered are remembered, so a replayed one can't start a second session.
- Simultaneous starts (both sides send a first message before either hears from the
  other): both sessions are kept, so every message decrypts; both sides then *send* with
  the session initiated by ``initiation_winner`` and converge without talking.
- Peer identity keys are trusted on first use and pinned. A different key later (in a
  bundle or an initial message) is a loud, sticky warning; if the peer was verified,
  sending stops until the user verifies again or accepts the new key.
- Downgrade (THREAT_MODEL.md "Downgrade"): we send in the clear only if our own band is a
  minor's, or the peer's own signed, recent declaration says minor, made with the key we
  pinned. The relay's word alone never turns encryption off.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from client.crypto_store import CryptoStore, PeerRecord, StoredSession
from client.errors import ClientError
from protocol import identity as identity_messages
from protocol.crypto import (
    CryptoError,
    IdentityKeyPair,
    PrekeyBundle,
    Session,
    X25519KeyPair,
    format_safety_number,
    frank,
    initiate,
    keep_own_session,
    respond,
    safety_number,
    sign_prekey,
    unfrank,
)
from protocol.crypto.attachment import AttachmentKey
from protocol.crypto.safety_number import fingerprint_digits
from protocol.e2ee import Envelope, decode_body, encode_body, pack_initial, unpack_initial
from protocol.frames import Bundle, OneTimePrekey, SignedPrekey
from protocol.limits import MAX_PREKEYS_PER_UPLOAD
from protocol.policy import Band, is_minor

#: The mode bound into every session's associated data and franking commitment.
E2EE = "e2ee"
#: A new signed prekey this often; the replaced one still answers initial messages for
#: the grace period (X3DH §4.6: late initial messages), then it is deleted.
SIGNED_PREKEY_ROTATION = timedelta(days=7)
SIGNED_PREKEY_GRACE = timedelta(days=14)
ONE_TIME_BATCH = 50
#: A minor's declaration older than this no longer counts for sending in the clear: honest
#: clients re-sign theirs every REDECLARE_AFTER, so a relay can't keep using the "minor"
#: declaration of someone who has since turned 18 (THREAT_MODEL.md "Downgrade").
MINOR_DECLARATION_MAX_AGE = timedelta(days=14)
REDECLARE_AFTER = timedelta(days=7)
#: How long first messages are remembered against replays (past any signed prekey's life).
SEEN_INITIALS_KEPT = SIGNED_PREKEY_ROTATION + SIGNED_PREKEY_GRACE + timedelta(days=1)

KeyChangeCallback = Callable[[str, bool], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Outgoing:
    body: str
    commitment: bytes


@dataclass(frozen=True, slots=True)
class Decrypted:
    text: str
    franking_key: bytes
    #: The attachment's key, digest, name, type and size, when the message carries a file.
    attachment: AttachmentKey | None = None
    #: The group it was sent to (from inside the ciphertext), for a group message.
    group: str | None = None


@dataclass(frozen=True, slots=True)
class SafetyNumber:
    peer: str
    number: str  # 60 digits in 12 groups of 5
    own_fingerprint: str  # the 30 digits that come from our key
    peer_fingerprint: str  # the 30 digits that come from theirs
    verified: bool
    key_changed: bool


def _check_declaration(peer: str, bundle: Bundle) -> tuple[str | None, datetime | None]:
    """The band and time the peer's own declaration states, or Nones if it isn't theirs
    (made for this handle, carrying the bundle's key, signed by it)."""
    d = bundle.declaration
    if d.handle != peer or d.identity_key != bundle.identity_key:
        return None, None
    signed = identity_messages.declaration_message(d.handle, d.band, d.identity_key, d.declared_at)
    if not identity_messages.verify(d.identity_key, signed, d.signature):
        return None, None
    return d.band, d.declared_at


class EndToEnd:
    def __init__(
        self,
        store: CryptoStore,
        identity: IdentityKeyPair,
        handle: str,
        *,
        own_band: Callable[[], Band],
        clock: Callable[[], datetime],
        on_key_change: KeyChangeCallback,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.store = store
        self._identity = identity
        self.handle = handle
        self._own_band = own_band
        self._clock = clock
        self._on_key_change = on_key_change
        self._random = random
        # Encrypt and decrypt are load-modify-save on the same sessions: one at a time.
        # Never held across network I/O (a bundle reply may queue behind a delivery).
        self._lock = asyncio.Lock()

    # --- prekeys (X3DH §3.2, §4.6) -------------------------------------------------------

    async def prekeys_due(self) -> tuple[SignedPrekey | None, list[OneTimePrekey]]:
        """What to upload on connecting: a new or not-yet-published signed prekey, and the
        first batch of one-time prekeys. Private halves are stored before this returns."""
        now = self._clock()
        await self.store.expire_signed_prekeys(now - SIGNED_PREKEY_GRACE)
        await self.store.forget_initials(now - SEEN_INITIALS_KEPT)
        current = await self.store.current_signed_prekey()
        if current is None or now - current.created_at >= SIGNED_PREKEY_ROTATION:
            pair = X25519KeyPair.generate(self._random)
            key_id = secrets.randbits(32)
            await self.store.add_prekeys("signed", [(key_id, pair.public, pair.private)], now)
            current = await self.store.current_signed_prekey()
            assert current is not None
        signed = None
        if await self.store.get_meta("signed_prekey_published") != str(current.id):
            signature = sign_prekey(self._identity, current.public)
            signed = SignedPrekey(id=current.id, public=current.public, signature=signature)
        one_time: list[OneTimePrekey] = []
        if await self.store.get_meta("one_time_prekeys_published") is None:
            one_time = await self.new_one_time_prekeys(ONE_TIME_BATCH)
        return signed, one_time

    async def mark_published(self, signed: SignedPrekey | None, one_time: bool) -> None:
        if signed is not None:
            await self.store.set_meta("signed_prekey_published", str(signed.id))
        if one_time:
            await self.store.set_meta("one_time_prekeys_published", "1")

    async def new_one_time_prekeys(self, count: int) -> list[OneTimePrekey]:
        count = min(count, MAX_PREKEYS_PER_UPLOAD)
        # Under the lock: two top-ups at once must not hand out the same ids.
        async with self._lock:
            first = int(await self.store.get_meta("next_one_time_id") or "1")
            await self.store.set_meta("next_one_time_id", str(first + count))
            pairs = [(first + i, X25519KeyPair.generate(self._random)) for i in range(count)]
            await self.store.add_prekeys(
                "one_time", [(i, p.public, p.private) for i, p in pairs], self._clock()
            )
        return [OneTimePrekey(id=i, public=p.public) for i, p in pairs]

    # --- our own declaration -------------------------------------------------------------

    async def redeclaration_due(self, own_band: str) -> bool:
        band_then = await self.store.get_meta("declared_band")
        at = await self.store.get_meta("declared_at")
        if band_then != own_band or at is None:
            return True
        return self._clock() - datetime.fromisoformat(at) >= REDECLARE_AFTER

    async def declared(self, declared_band: str, at: datetime) -> None:
        await self.store.set_meta("declared_band", declared_band)
        await self.store.set_meta("declared_at", at.isoformat())

    # --- peers ---------------------------------------------------------------------------

    async def peer(self, handle: str) -> PeerRecord | None:
        return await self.store.peer(handle)

    async def has_session(self, peer: str) -> bool:
        return await self.store.has_active_session(peer)

    async def learn_bundle(self, peer: str, bundle: Bundle) -> PeerRecord:
        """Record what a bundle says: the relay's mode, the peer's declared band, its key."""
        async with self._lock:
            record = await self._observe_identity(peer, bundle.identity_key)
            declared_band, declared_at = _check_declaration(peer, bundle)
            record = replace(
                record, mode=bundle.mode, declared_band=declared_band, declared_at=declared_at
            )
            await self.store.save_peer(record)
            return record

    async def note_mode(self, peer: str, mode: str | None) -> None:
        """The relay's latest word on the conversation's mode (None: ask again)."""
        async with self._lock:
            record = await self.store.peer(peer)
            if record is not None and record.mode != mode:
                await self.store.save_peer(replace(record, mode=mode))

    async def forget_declaration(self, peer: str) -> None:
        """Their age group changed: ask again for the mode and their declaration."""
        async with self._lock:
            record = await self.store.peer(peer)
            if record is not None:
                await self.store.save_peer(
                    replace(record, mode=None, declared_band=None, declared_at=None)
                )

    def may_be_visible(self, record: PeerRecord | None) -> bool:
        """Fail closed (THREAT_MODEL.md "Downgrade"): a conversation may be in the clear
        only if our own band is a minor's, or the peer's own signed, recent declaration says
        minor — made with the key we pinned (not one that changed since)."""
        if is_minor(self._own_band()):
            return True
        if record is None or record.key_changed or record.send_blocked:
            return False
        declared, at = record.declared_band, record.declared_at
        if declared is None or at is None or not is_minor(declared):  # type: ignore[arg-type]
            return False
        return self._clock() - at <= MINOR_DECLARATION_MAX_AGE

    def expects_encryption(self, record: PeerRecord | None) -> bool:
        """Would a plaintext message from this peer be a downgrade? Yes when both of us are
        adults by our own signed word (ours, and their declaration with the pinned key)."""
        if is_minor(self._own_band()) or record is None or record.key_changed:
            return False
        return record.declared_band is not None and not is_minor(record.declared_band)  # type: ignore[arg-type]

    def check_visible(self, record: PeerRecord | None) -> None:
        if not self.may_be_visible(record):
            raise ClientError("downgrade_refused")

    async def _observe_identity(self, peer: str, key: bytes) -> PeerRecord:
        """Trust on first use; a different key later is a sticky warning (lock held)."""
        record = await self.store.peer(peer)
        if record is None:
            record = PeerRecord(peer, key, False, False, False, None, None)
            await self.store.save_peer(record)
            return record
        if record.identity_key == key:
            return record
        was_verified = record.verified
        record = replace(
            record,
            identity_key=key,
            verified=False,
            key_changed=True,
            send_blocked=was_verified or record.send_blocked,
            declared_band=None,  # signed by the old key: counts for nothing now
            declared_at=None,
        )
        await self.store.save_peer(record)
        await self.store.delete_sessions(peer)  # they were with the old key
        await self._on_key_change(peer, was_verified)
        return record

    # --- safety numbers ------------------------------------------------------------------

    async def safety_number(self, peer: str) -> SafetyNumber:
        return self._safety_number(await self._known(peer))

    def _safety_number(self, record: PeerRecord) -> SafetyNumber:
        own = self._identity.public
        number = safety_number(self.handle, own, record.handle, record.identity_key)
        return SafetyNumber(
            record.handle,
            format_safety_number(number),
            fingerprint_digits(own, self.handle.encode()),
            fingerprint_digits(record.identity_key, record.handle.encode()),
            record.verified,
            record.key_changed,
        )

    async def _known(self, peer: str) -> PeerRecord:
        record = await self.store.peer(peer)
        if record is None:
            raise ClientError("no_peer_key")
        return record

    async def verify(self, peer: str, expected: str | None = None) -> SafetyNumber:
        """The user compared the safety number: mark it verified (clears a key warning).

        ``expected`` is the number the user compared; if the key changed since it was
        shown, nothing is marked and ``safety_number_changed`` is raised.
        """
        async with self._lock:
            record = await self._known(peer)
            digits = "".join(self._safety_number(record).number.split())
            if expected is not None and digits != "".join(expected.split()):
                raise ClientError("safety_number_changed")
            record = replace(record, verified=True, key_changed=False, send_blocked=False)
            await self.store.save_peer(record)
        return self._safety_number(record)

    async def accept_key(self, peer: str) -> SafetyNumber:
        """Accept a changed key without verifying it (sending resumes, not verified)."""
        async with self._lock:
            record = replace(await self._known(peer), key_changed=False, send_blocked=False)
            await self.store.save_peer(record)
        return self._safety_number(record)

    # --- messages ------------------------------------------------------------------------

    async def encrypt(
        self,
        peer: str,
        text: str,
        bundle: Bundle | None,
        attachment: AttachmentKey | None = None,
        group: str | None = None,
    ) -> Outgoing:
        """Encrypt ``text`` (and an attachment's key) for ``peer``; ``bundle`` is needed
        when no session exists. ``group``: a group message's group id, sealed inside."""
        async with self._lock:
            record = await self.store.peer(peer)
            if record is not None and record.send_blocked:
                raise ClientError("safety_number_changed")
            sessions = [s for s in await self.store.sessions(peer) if s.active]
            now = self._clock()
            if sessions:
                stored = sessions[0]
                session = Session.from_bytes(stored.state, random=self._random)
                sid: int | None = stored.sid
                initial = stored.initial
            else:
                if bundle is None or bundle.signed_prekey is None:
                    raise ClientError("no_prekeys")
                if record is None or record.identity_key != bundle.identity_key:
                    raise ClientError("protocol_error", "the bundle's key is not the pinned one")
                spk, opk = bundle.signed_prekey, bundle.one_time_prekey
                prekeys = PrekeyBundle(
                    identity_key=bundle.identity_key,
                    spk_id=spk.id,
                    spk_public=spk.public,
                    spk_signature=spk.signature,
                    opk_id=None if opk is None else opk.id,
                    opk_public=None if opk is None else opk.public,
                )
                try:
                    started = initiate(
                        self._identity, self.handle, peer, prekeys, E2EE, random=self._random
                    )
                except CryptoError as exc:
                    raise ClientError(exc.code) from None
                session = Session.initiator(
                    started.agreement.shared_key,
                    started.agreement.associated_data,
                    started.peer_ratchet_key,
                    random=self._random,
                )
                sid, initial = None, pack_initial(started.header)
            franked = frank(text, E2EE, attachment=attachment, group=group, random=self._random)
            message = session.encrypt(franked.plaintext)
            header = None if initial is None else unpack_initial(initial)
            # Saved before the ciphertext can leave: a crash must not reuse this chain key.
            await self.store.save_session(
                peer, session.to_bytes(), now, sid=sid, initial=initial, activate=sid is None
            )
        return Outgoing(encode_body(Envelope(message, header)), franked.commitment)

    async def decrypt(
        self,
        sender: str,
        body: str,
        commitment: bytes | None,
        keep: Callable[[Decrypted], Awaitable[None]],
    ) -> Decrypted:
        """Decrypt and check the franking commitment; raise ``CryptoError`` to drop it.

        ``keep`` stores the plaintext (in the history) *before* the session's new state is
        saved: a crash in between leaves the old state, and the redelivery decrypts again.
        Nothing changes — no key pinned, no session touched — unless the message
        authenticates (Double Ratchet §3.5).
        """
        envelope = decode_body(body)
        if commitment is None:
            raise CryptoError("franking_mismatch", "an e2ee message without a commitment")
        async with self._lock:
            sessions = await self.store.sessions(sender)
            if envelope.initial is not None:
                header = envelope.initial
                known = [s for s in sessions if s.their_ephemeral == header.ephemeral_key]
                if not known:
                    if await self.store.seen_initial(sender, header.ephemeral_key):
                        raise CryptoError("duplicate_message", "a replayed first message")
                    return await self._first_message(sender, envelope, commitment, sessions, keep)
                record = await self.store.peer(sender)
                if record is not None and record.identity_key != header.identity_key:
                    raise CryptoError("decryption_failed", "the identity key doesn't match")
                sessions = known
            failure: CryptoError | None = None
            for stored in sessions:
                session = Session.from_bytes(stored.state, random=self._random)
                try:
                    plaintext = session.decrypt(envelope.message)
                except CryptoError as exc:
                    if exc.code == "duplicate_message":
                        raise
                    failure = exc
                    continue
                inner = unfrank(plaintext, commitment, E2EE)
                result = Decrypted(inner.text, inner.franking_key, inner.attachment, inner.group)
                await keep(result)
                # A reply on a session we initiated also ends its initial phase (initial=None).
                await self.store.save_session(
                    sender, session.to_bytes(), self._clock(), sid=stored.sid
                )
                return result
            raise failure or CryptoError("decryption_failed", "no session with this sender")

    async def _first_message(
        self,
        sender: str,
        envelope: Envelope,
        commitment: bytes,
        sessions: list[StoredSession],
        keep: Callable[[Decrypted], Awaitable[None]],
    ) -> Decrypted:
        """An initial message starting a new session (X3DH §3.4), lock held."""
        header = envelope.initial
        assert header is not None
        spk = await self.store.prekey("signed", header.spk_id)
        opk = None if header.opk_id is None else await self.store.prekey("one_time", header.opk_id)
        if spk is None or (header.opk_id is not None and opk is None):
            raise CryptoError("decryption_failed", "the initial message names unknown prekeys")
        spk_pair = X25519KeyPair.from_private(spk.private)
        agreement = respond(
            self._identity,
            self.handle,
            sender,
            header,
            spk_pair,
            None if opk is None else X25519KeyPair.from_private(opk.private),
            E2EE,
        )
        session = Session.responder(
            agreement.shared_key, agreement.associated_data, spk_pair, random=self._random
        )
        plaintext = session.decrypt(envelope.message)
        inner = unfrank(plaintext, commitment, E2EE)
        # Authenticated: only now may the sender's identity key be pinned (or change).
        before = await self.store.peer(sender)
        await self._observe_identity(sender, header.identity_key)
        key_changed = before is not None and before.identity_key != header.identity_key
        # Simultaneous start: keep sending with the winner's session (see module docstring).
        active = next((s for s in sessions if s.active), None)
        ours_pending = active is not None and active.initial is not None and not key_changed
        activate = not ours_pending or not keep_own_session(self.handle, sender)
        result = Decrypted(inner.text, inner.franking_key, inner.attachment, inner.group)
        await keep(result)
        await self.store.save_session(
            sender,
            session.to_bytes(),
            self._clock(),
            their_ephemeral=header.ephemeral_key,
            activate=activate,
            delete_one_time_prekey=header.opk_id,
        )
        return result
