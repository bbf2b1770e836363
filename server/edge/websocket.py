"""GET /v1/ws: the authenticated message channel (PROTOCOL.md §4–§6).

Per connection: send a challenge, accept only `auth` until it verifies, then dispatch frames
by type through one table. Every bad frame gets an `error` frame with its code and the
connection lives on; only a failed or late authentication closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

from protocol import identity
from protocol.codec import FrameError, decode_client_frame, encode_frame, utf8_size
from protocol.codec import encode as encode_json
from protocol.e2ee import is_envelope, is_opaque_blob
from protocol.errors import wire_message
from protocol.frames import (
    Accepted,
    Ack,
    Auth,
    Block,
    Bundle,
    Challenge,
    ContactRequest,
    ContactRespond,
    ContactsList,
    ContactsResult,
    Done,
    Error,
    FetchBundle,
    Frame,
    PrekeysLow,
    Ready,
    Redeclare,
    Report,
    Search,
    SearchResult,
    Send,
    SetBirthdate,
    Unblock,
    UploadPrekeys,
    conversation_id,
)
from protocol.group_frames import GroupSend
from protocol.limits import (
    AUTH_TIMEOUT_SECONDS,
    MAX_WEBSOCKET_MESSAGE_BYTES,
    NONCE_BYTES,
    PREKEYS_LOW_WATER,
)
from protocol.policy import Decision
from protocol.registration import AgeDeclaration
from server.app_keys import (
    COMMITTER,
    CONFIG,
    FRANKING_SECRET,
    HUB,
    KEY_DIRECTORY,
    LIMITS,
    QUOTA,
    RELAY_ID,
    SAFETY,
    SIGNALS,
    SOCIAL,
    STORE,
)
from server.attachments.sending import NOTHING_ATTACHED, claim, hold, screen
from server.delivery.connection import Connection
from server.delivery.records import AckRecord, NewMessage, StoredMessage
from server.edge.answer_queue import AnswerQueue
from server.edge.groups import GroupHandlers, answer_group_send
from server.edge.guardians import GuardianHandlers
from server.edge.moderation import ModerationHandlers
from server.edge.report_items import FOREIGN, first_foreign, normalise
from server.keys.declarations import declaration_error
from server.keys.directory import signed_prekey_valid
from server.keys.franking import check_report
from server.safety.actions import CLOSE_SUSPENDED

log = logging.getLogger("agechat.relay.ws")

#: Application close codes (RFC 6455 §7.4.2 leaves 4000–4999 to applications).
CLOSE_AUTH_FAILED = 4001
CLOSE_AUTH_TIMEOUT = 4002
CLOSE_REPLACED = 4003
#: Sends a connection may have waiting for their commit before the relay stops reading it.
MAX_SENDS_IN_FLIGHT = 256


_F = TypeVar("_F")
#: A send waiting for its answer, and what its commit will resolve to.
_Answer = tuple[Send | GroupSend, asyncio.Future[Any]]

#: Tasks that outlive the handler that started them (kept so they aren't garbage-collected).
_background: set[asyncio.Task[None]] = set()


class _Session:
    """State of one WebSocket from challenge to close."""

    def __init__(self, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.app = request.app
        self.ws = ws
        self.peer = request.remote or "?"
        self.transport = request.transport
        self.flow_control = request.protocol
        self.nonce = secrets.token_bytes(NONCE_BYTES)
        self.connection: Connection | None = None
        self._accept_queue: AnswerQueue[_Answer] | None = None
        self.accept_task: asyncio.Task[None] | None = None
        # The groups, guardians and moderation handlers of this connection, each made when
        # its first frame comes (most connections never send one).
        self._features: dict[type, Any] | None = None

    @property
    def handle(self) -> str:
        assert self.connection is not None
        return self.connection.handle

    @property
    def _accepts(self) -> AnswerQueue[_Answer]:
        """Sends are pipelined: the read loop queues them for the group commit and reads on;
        this queue answers `accepted` in order as their commits finish (``answer_accepts``).
        Its bound is the back-pressure: a client with this many sends in flight is not read
        further. Made, with its task, on the connection's first send: an idle one has neither.
        """
        if self._accept_queue is None:
            loop = asyncio.get_running_loop()
            self._accept_queue = AnswerQueue(loop, MAX_SENDS_IN_FLIGHT)
            self.accept_task = loop.create_task(self.answer_accepts())
        return self._accept_queue

    def feature(self, kind: type[_F]) -> _F:
        """This connection's handler object of one feature, made on first use."""
        if self._features is None:
            self._features = {}
        handlers = self._features.get(kind)
        if handlers is None:
            handlers = self._features[kind] = kind(self)
        return handlers

    async def send(self, frame: Frame) -> None:
        if self.connection is not None:
            await self.connection.send(frame)
        elif not self.ws.closed:
            with contextlib.suppress(ConnectionResetError, RuntimeError):
                await self.ws.send_str(encode_frame(frame))

    async def queue_answer(self, frame: Send | GroupSend, future: asyncio.Future[Any]) -> None:
        """Answer ``frame`` once ``future`` resolves, in order with every other send."""
        await self._accepts.put((frame, future))

    async def refuse(self, code: str, detail: str | None = None, ref: str | None = None) -> None:
        message = wire_message(code) + (f" ({detail})" if detail else "")
        await self.send(Error(code=code, message=message, ref=ref))

    async def refuse_decision(self, decision: Decision, ref: str) -> None:
        """A policy refusal, with the sentence that fits its rule and direction."""
        await self.send(Error(code=decision.reason, message=decision.sentence, ref=ref))

    async def handle_text(self, text: str) -> None:
        try:
            frame = decode_client_frame(text)
        except FrameError as exc:
            await self.refuse(exc.code, exc.detail, ref=exc.ref)
            return
        if self.connection is None and not isinstance(frame, Auth):
            await self.refuse("not_authenticated")
            return
        await _HANDLERS[type(frame)](self, frame)

    async def _on_auth(self, frame: Auth) -> None:
        if self.connection is not None:
            await self.refuse("already_authenticated")
            return
        account = await self.app[STORE].get_account(frame.handle)
        message = identity.auth_message(self.app[RELAY_ID], self.nonce, frame.handle)
        if account is None or not identity.verify(account.identity_key, message, frame.signature):
            log.info("auth failed peer=%s handle=%s", self.peer, frame.handle)
            await self.refuse("auth_failed")
            await self.ws.close(code=CLOSE_AUTH_FAILED, message=b"auth_failed")
            return
        if frame.handle in self.app[SAFETY].suspended:
            # Messages to the account wait in the store until a moderator reinstates it.
            log.info("auth refused: suspended peer=%s handle=%s", self.peer, frame.handle)
            await self.refuse("account_suspended")
            await self.ws.close(code=CLOSE_SUSPENDED, message=b"account_suspended")
            return
        connection = Connection(
            frame.handle,
            self.ws,
            self.app[STORE],
            self.app[FRANKING_SECRET],
            self.transport,
            self.flow_control,
        )
        previous = self.app[HUB].attach(connection)
        self.connection = connection
        if previous is not None:
            # In the background: a stalled old session must not delay this login.
            notice = Error(code="session_replaced", message=wire_message("session_replaced"))
            task = asyncio.create_task(previous.close(CLOSE_REPLACED, "session_replaced", notice))
            _background.add(task)
            task.add_done_callback(_background.discard)
        self.app[SIGNALS].saw_login(frame.handle, frame.utc_offset_minutes)
        log.info("auth ok peer=%s handle=%s", self.peer, frame.handle)
        # Kept for a CyberTipline report's IP capture events (docs/THREAT_MODEL.md).
        await self.app[SAFETY].cases.record_login(frame.handle, self.peer, self.app[CONFIG].clock())
        await connection.send(Ready(handle=frame.handle, server_time=self.app[CONFIG].clock()))
        connection.start_delivery()

    async def _on_send(self, frame: Send) -> None:
        assert self.connection is not None
        sender = self.connection.handle
        social = self.app[SOCIAL]
        # The payload's shape must match its own mode (§6.1). This looks at the frame alone
        # (nothing about the recipient, no side effects), so it comes before the policy.
        if (problem := _shape_problem(frame)) is not None:
            await self.refuse("mode_mismatch", problem, ref=frame.id)
            return
        # (Awaited only for an unknown handle or oneself: otherwise there is no problem.)
        if (frame.to not in social.accounts or frame.to == sender) and (
            problem := await self.target_error(frame.to, counted=True)
        ) is not None:
            await self.refuse(problem, ref=frame.id)
            return
        # An attachment is screened before the policy decides: known material is held
        # whoever the recipient is and whatever the policy would have said.
        # (Most messages have no attachment: no await for one.)
        attached = frame.attachment is not msgspec.UNSET
        screened = await screen(self.app, sender, frame) if attached else NOTHING_ATTACHED
        if screened.refusal is not None:
            await self.refuse(screened.refusal, screened.detail, ref=frame.id)
            return
        now = self.app[CONFIG].clock()  # one reading: the decision's day, the message's time
        decision = social.decide_message_now(
            sender, frame.to, frame.mode, now.date()
        ) or await social.decide_message(sender, frame.to, frame.mode)
        conversation = conversation_id(sender, frame.to)
        if attached:
            await hold(self.app, sender, frame.to, screened)  # after: its answer is unchanged
        if decision.outcome == "refuse":
            if decision.reason == "mode_mismatch":
                detail = f"this conversation is {social.mode(sender, frame.to)}"
                await self.refuse(decision.reason, detail, ref=frame.id)
            else:
                await self.refuse_decision(decision, ref=frame.id)
            return
        if decision.outcome == "drop" or screened.held:
            # Blocked by the recipient, or held by a hash match: answered like any stored
            # message, in order, and never delivered; the sender is not told why
            # (POLICY.md "Block", MODERATION.md "Hash matching").
            await self._answer_as_stored(frame, sender, conversation)
            return
        size = utf8_size(frame.body)
        if (full := self.app[QUOTA].refusal(sender, frame.to, size)) is not None:
            await self.refuse(full, ref=frame.id)  # before anything is claimed or stored
            return
        if attached and (taken := await claim(self.app, sender, screened)) is not None:
            await self.refuse(taken, ref=frame.id)
            return
        message = NewMessage(
            sender=sender,
            msg_id=frame.id,
            recipient=frame.to,
            conversation=conversation,
            mode=frame.mode,
            body=frame.body,
            sent_at=now,
            request=decision.outcome == "request",
            commitment=frame.commitment,
            attachment=screened.ref,
        )
        try:
            future = self.app[COMMITTER].submit_message(message)
        except RuntimeError:  # shutting down
            await self.refuse("internal_error", ref=frame.id)
            return
        accepts = self._accepts
        if not accepts.put_nowait((frame, future)):
            await accepts.put((frame, future))

    async def _answer_as_stored(self, frame: Send, sender: str, conversation: str) -> None:
        """The answer a stored message gets, for one that is not stored at all."""
        answer: asyncio.Future[StoredMessage | None] = asyncio.get_running_loop().create_future()
        answer.set_result(
            StoredMessage(
                0,
                sender,
                frame.id,
                frame.to,
                conversation,
                frame.mode,
                None,
                self.app[CONFIG].clock(),
                # What the answer would have said had it been stored.
                request=self.app[SOCIAL].would_be_request(sender, frame.to),
            )
        )
        await self._accepts.put((frame, answer))

    async def answer_accepts(self) -> None:
        """Answer each queued `send` once its commit finishes, in the order they came."""
        accepts, signals = self._accepts, self.app[SIGNALS]
        while True:
            answer = accepts.get_nowait()
            frame, future = answer if answer is not None else await accepts.get()
            assert self.connection is not None
            if isinstance(frame, GroupSend):
                await answer_group_send(self, frame, future)
                continue
            sender = self.connection.handle
            fresh = False
            try:
                stored = await future
                fresh = stored is not None
                if stored is None:  # a resend of an id the relay already holds: idempotent
                    stored = await self.app[STORE].find_message(sender, frame.id)
            except Exception:
                log.exception("storing a message failed")
                await self.refuse("internal_error", ref=frame.id)
                continue
            if stored is None or stored.recipient != frame.to:
                await self.refuse("duplicate_id_conflict", ref=frame.id)
                continue
            accepted = Accepted(
                id=frame.id,
                conversation=stored.conversation,
                sent_at=stored.sent_at,
                request=stored.request,
            )
            if self.connection.write(accepted):
                await self.connection.drain()
            if fresh:  # scored once, after the sender has its answer
                signals.schedule(stored)

    async def _on_ack(self, frame: Ack) -> None:
        assert self.connection is not None
        recipient = self.connection.handle
        acks = [AckRecord(recipient, ref.sender, ref.id) for ref in frame.refs]
        try:
            self.app[COMMITTER].submit_acks(acks)
        except RuntimeError:  # shutting down: the messages are redelivered next time
            await self.refuse("internal_error")

    # --- contacts, search, blocks, reports, birth dates (PROTOCOL.md §6.2) ---------------

    async def target_error(self, handle: str, *, counted: bool = False) -> str | None:
        """``counted``: a message or request to a handle that doesn't exist counts as a
        lookup of a stranger (PROTOCOL.md §6.3), so the answer stops telling past the limit."""
        assert self.connection is not None
        social = self.app[SOCIAL]
        if handle not in social.accounts:
            if counted:
                return await social.unknown_handle(self.connection.handle, handle)
            return "unknown_recipient"
        if handle == self.connection.handle:
            return "cannot_target_self"
        return None

    async def _answer(self, rid: str, decision: Decision, outcome: str) -> None:
        if decision.outcome == "refuse":
            await self.refuse_decision(decision, ref=rid)
        else:
            await self.send(Done(rid=rid, outcome=outcome))

    async def _on_contact_request(self, frame: ContactRequest) -> None:
        assert self.connection is not None
        if (problem := await self.target_error(frame.to, counted=True)) is not None:
            await self.refuse(problem, ref=frame.rid)
            return
        decision = await self.app[SOCIAL].contact_request(self.connection.handle, frame.to)
        # A request to someone who blocked you looks sent (they never learn of it).
        await self._answer(frame.rid, decision, "requested")

    async def _on_contact_respond(self, frame: ContactRespond) -> None:
        assert self.connection is not None
        if (problem := await self.target_error(frame.handle)) is not None:
            await self.refuse(problem, ref=frame.rid)
            return
        decision = await self.app[SOCIAL].respond(
            self.connection.handle, frame.handle, frame.accept
        )
        if decision.reason == "declined":
            self.app[SIGNALS].schedule_pushback("declined", self.connection.handle, frame.handle)
        await self._answer(frame.rid, decision, decision.reason)

    async def _on_contacts_list(self, frame: ContactsList) -> None:
        assert self.connection is not None
        contacts = self.app[SOCIAL].list_contacts(self.connection.handle)
        await self.send(ContactsResult(rid=frame.rid, contacts=contacts))

    async def _on_search(self, frame: Search) -> None:
        assert self.connection is not None
        if not self.app[LIMITS].searches.allow(self.connection.handle, self.app[CONFIG].clock()):
            await self.refuse("search_limited", ref=frame.rid)
            return
        results = self.app[SOCIAL].search(self.connection.handle, frame.query)
        await self.send(SearchResult(rid=frame.rid, results=results))

    async def _on_block(self, frame: Block) -> None:
        assert self.connection is not None
        if (problem := await self.target_error(frame.handle)) is not None:
            await self.refuse(problem, ref=frame.rid)
            return
        await self.app[SOCIAL].block(self.connection.handle, frame.handle)
        self.app[SIGNALS].schedule_pushback("blocked", self.connection.handle, frame.handle)
        await self.send(Done(rid=frame.rid, outcome="blocked"))

    async def _on_unblock(self, frame: Unblock) -> None:
        assert self.connection is not None
        if (problem := await self.target_error(frame.handle)) is not None:
            await self.refuse(problem, ref=frame.rid)
            return
        await self.app[SOCIAL].unblock(self.connection.handle, frame.handle)
        await self.send(Done(rid=frame.rid, outcome="unblocked"))

    async def _on_report(self, frame: Report) -> None:
        assert self.connection is not None
        if (problem := await self.target_error(frame.handle)) is not None:
            await self.refuse(problem, ref=frame.rid)
            return
        reporter = self.connection.handle
        # Franked (e2ee) messages are verified or the whole report is refused (§6.4).
        verified = check_report(self.app[FRANKING_SECRET], reporter, frame.handle, frame.messages)
        if verified is None:
            await self.refuse("franking_invalid", ref=frame.rid)
            return
        # Only the reporter's own conversation: an unfranked message naming anyone else
        # would put people in a case on the reporter's word alone; refused whole, never
        # rewritten. (A franked one naming anyone else has just failed the franking check.)
        if first_foreign(frame.messages, reporter, frame.handle) is not None:
            log.info("report refused: foreign item reporter=%s reported=%s", reporter, frame.handle)
            await self.refuse(FOREIGN, ref=frame.rid)
            return
        # Each message once, its time within the relay's past (server/edge/report_items.py).
        items = normalise(frame.messages, verified, self.app[CONFIG].clock())
        evidence = encode_json(
            [
                {**msgspec.to_builtins(m), "verified": ok}
                for m, ok in zip(items.messages, items.verified, strict=True)
            ]
        )
        await self.app[SOCIAL].report(reporter, frame.handle, frame.reason, evidence)
        await self.app[SAFETY].on_report(
            reporter, frame.handle, frame.reason, items.messages, items.verified
        )
        self.app[SIGNALS].schedule_pushback("reported", reporter, frame.handle)
        log.info(
            "report filed reporter=%s reported=%s verified=%d/%d duplicates=%d clamped=%d",
            reporter,
            frame.handle,
            sum(items.verified),
            len(items.verified),
            items.duplicates,
            items.clamped,
        )
        await self.send(Done(rid=frame.rid, outcome="reported"))

    async def _on_redeclare(self, frame: Redeclare) -> None:
        """Store a fresh declaration of the band the relay already holds (not a change)."""
        assert self.connection is not None
        handle = self.connection.handle
        account = await self.app[STORE].get_account(handle)
        assert account is not None
        social = self.app[SOCIAL]
        problem = declaration_error(
            frame.declaration,
            handle,
            account.identity_key,
            social.accounts[handle].birthdate,  # the relay's, as an admin may have set it
            self.app[CONFIG].clock(),
        )
        if problem is not None:
            await self.refuse(problem, ref=frame.rid)
            return
        await social.social.set_declaration(handle, encode_json(frame.declaration))
        await self.send(Done(rid=frame.rid, outcome="redeclared"))

    async def _on_set_birthdate(self, frame: SetBirthdate) -> None:
        assert self.connection is not None
        handle = self.connection.handle
        account = await self.app[STORE].get_account(handle)
        assert account is not None
        problem = declaration_error(
            frame.declaration,
            handle,
            account.identity_key,
            frame.birthdate,
            self.app[CONFIG].clock(),
        )
        if problem is not None:
            await self.refuse(problem, ref=frame.rid)
            return
        decision = await self.app[SOCIAL].change_birthdate(
            handle, frame.birthdate, encode_json(frame.declaration)
        )
        await self._answer(frame.rid, decision, "birthdate_changed")

    # --- the key directory (issue #4) -------------------------------------------------

    async def _on_upload_prekeys(self, frame: UploadPrekeys) -> None:
        assert self.connection is not None
        handle = self.connection.handle
        account = await self.app[STORE].get_account(handle)
        assert account is not None
        spk = frame.signed_prekey
        if spk is not None and not signed_prekey_valid(account.identity_key, spk):
            await self.refuse("bad_signature", "the signed prekey's signature", ref=frame.rid)
            return
        stock = await self.app[KEY_DIRECTORY].upload(
            handle, spk, frame.one_time_prekeys, self.app[CONFIG].clock()
        )
        await self.send(Done(rid=frame.rid, outcome=f"stored:{stock}"))

    async def _on_fetch_bundle(self, frame: FetchBundle) -> None:
        assert self.connection is not None
        me = self.connection.handle
        if frame.handle == me:
            await self.refuse("cannot_target_self", ref=frame.rid)
            return
        if not self.app[LIMITS].bundles.allow(me, self.app[CONFIG].clock()):
            await self.refuse("bundle_limited", ref=frame.rid)
            return
        # Only someone who may write to the account gets its keys (and its declaration);
        # strangers' lookups are counted and limited (the answer says minor or adult).
        social = self.app[SOCIAL]
        decision = await social.look_up(me, frame.handle)
        if decision.outcome == "refuse":
            await self.refuse_decision(decision, ref=frame.rid)
            return
        # In a visible conversation the bundle is asked for the declaration: no X3DH, so no
        # one-time prekey is spent and none need have been published (§6.3).
        mode = social.mode(me, frame.handle)
        directory = self.app[KEY_DIRECTORY]
        account = await self.app[STORE].get_account(frame.handle)
        signed = await directory.current_signed(frame.handle)
        if account is None or (signed is None and mode == "e2ee"):
            await self.refuse("no_prekeys", ref=frame.rid)
            return
        wanted = mode == "e2ee" and frame.one_time_prekey
        one_time = await directory.take_one_time(frame.handle) if wanted else None
        await self.send(
            Bundle(
                rid=frame.rid,
                handle=frame.handle,
                mode=mode,
                identity_key=account.identity_key,
                declaration=_declaration(account.declaration),
                signed_prekey=signed,
                one_time_prekey=one_time,
            )
        )
        if not wanted:
            return
        remaining = await directory.one_time_count(frame.handle)
        owner = self.app[HUB].connection(frame.handle)
        if remaining < PREKEYS_LOW_WATER and owner is not None:
            await owner.send(PrekeysLow(remaining=remaining))


def _feature_table(
    kind: type[GroupHandlers | GuardianHandlers | ModerationHandlers],
) -> dict[type, Callable[[_Session, Any], Awaitable[None]]]:
    def on(
        method: Callable[[Any, Any], Awaitable[None]],
    ) -> Callable[[_Session, Any], Awaitable[None]]:
        return lambda session, frame: method(session.feature(kind), frame)

    return {frame_type: on(method) for frame_type, method in kind.table().items()}


#: One dispatch table, shared by every connection: each client frame type has exactly one
#: handler, called with the session and the frame.
_HANDLERS: dict[type, Callable[[_Session, Any], Awaitable[None]]] = {
    Auth: _Session._on_auth,
    Send: _Session._on_send,
    Ack: _Session._on_ack,
    ContactRequest: _Session._on_contact_request,
    ContactRespond: _Session._on_contact_respond,
    ContactsList: _Session._on_contacts_list,
    Search: _Session._on_search,
    Block: _Session._on_block,
    Unblock: _Session._on_unblock,
    Report: _Session._on_report,
    SetBirthdate: _Session._on_set_birthdate,
    Redeclare: _Session._on_redeclare,
    UploadPrekeys: _Session._on_upload_prekeys,
    FetchBundle: _Session._on_fetch_bundle,
    **_feature_table(GuardianHandlers),
    **_feature_table(GroupHandlers),
    **_feature_table(ModerationHandlers),
}


def _shape_problem(frame: Send) -> str | None:
    """Why the payload contradicts the frame's own mode, or None (PROTOCOL.md §6.1):
    e2ee needs an envelope and a commitment; visible, neither."""
    if frame.mode == "e2ee":
        if frame.commitment is None:
            return "an e2ee message needs a commitment"
        if not is_envelope(frame.body):
            return "an e2ee body must be an envelope"
    else:
        if frame.commitment is not None:
            return "a visible message has no commitment"
        if is_envelope(frame.body):
            return "a visible body must not be an e2ee envelope"
        if is_opaque_blob(frame.body):
            return "a visible body must be readable text, not encoded binary data"
    return None


def _declaration(raw: bytes) -> AgeDeclaration:
    return msgspec.json.decode(raw, type=AgeDeclaration)


def _auth_deadline(session: _Session) -> None:
    """A timer's callback (not a task per connection): close a socket still not logged in."""
    if session.connection is None and not session.ws.closed:
        task = asyncio.create_task(_close_unauthenticated(session))
        _background.add(task)
        task.add_done_callback(_background.discard)


async def _close_unauthenticated(session: _Session) -> None:
    await session.refuse("auth_timeout")
    await session.ws.close(code=CLOSE_AUTH_TIMEOUT, message=b"auth_timeout")


async def websocket_handler(request: web.Request) -> web.WebSocketResponse:
    config = request.app[CONFIG]
    ws = web.WebSocketResponse(
        heartbeat=config.heartbeat_seconds, max_msg_size=MAX_WEBSOCKET_MESSAGE_BYTES
    )
    await ws.prepare(request)
    session = _Session(request, ws)
    deadline = asyncio.get_running_loop().call_later(AUTH_TIMEOUT_SECONDS, _auth_deadline, session)
    try:
        await session.send(
            Challenge(
                nonce=session.nonce, relay_id=request.app[RELAY_ID], server_time=config.clock()
            )
        )
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    await session.handle_text(msg.data)
                except Exception:
                    log.exception("frame handler failed peer=%s", session.peer)
                    await session.refuse("internal_error")
                if session.connection is not None:
                    # Out now: if the peer's close is already read, aiohttp closes the
                    # socket before this turn ends, and a frame still waiting would be lost.
                    session.connection.flush()
            elif msg.type == WSMsgType.BINARY:
                await session.refuse("binary_not_supported")
            elif msg.type == WSMsgType.ERROR:
                log.info("websocket error peer=%s: %s", session.peer, ws.exception())
    finally:
        deadline.cancel()
        if session.accept_task is not None:
            session.accept_task.cancel()
        if session.connection is not None:
            request.app[HUB].detach(session.connection)
            await session.connection.stop_delivery()
            log.info("closed handle=%s", session.connection.handle)
            session.connection.flush()
        if not ws.closed:
            await ws.close(code=WSCloseCode.GOING_AWAY)
    return ws
