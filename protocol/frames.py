"""WebSocket frames (PROTOCOL.md §4–§6): msgspec Structs in two tagged unions.

Every frame is a JSON object whose ``type`` field names it. Decoding validates types and
sizes in the same step, so a handler only ever sees a well-formed frame. Byte fields travel
as standard base64 (msgspec's JSON encoding of ``bytes``); times are RFC 3339 in UTC.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal, get_args

import msgspec

from protocol.attachments import AttachmentRef
from protocol.frame_base import Frame
from protocol.group_frames import (
    GroupAdd,
    GroupCreate,
    GroupLeave,
    GroupList,
    GroupRemove,
    GroupRename,
    GroupRespond,
    GroupResult,
    GroupSend,
    GroupsResult,
)
from protocol.guardians import GuardianApproval, GuardianLink
from protocol.limits import MAX_ACK_REFS, MAX_PREKEYS_PER_UPLOAD, MAX_REPORTED_MESSAGES
from protocol.moderation import ModAnswer, ModRequest
from protocol.policy import Guardians
from protocol.registration import AgeDeclaration
from protocol.types import (
    Body,
    ConversationId,
    Handle,
    MessageId,
    Mode,
    Nonce,
    PublicKey,
    Signature,
    Time,
)

RequestId = MessageId
Kind = Literal["message", "system", "notice"]
#: A franking commitment or relay tag (HMAC-SHA256 output) and a franking key: 32 bytes.
Commitment = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
FrankingKey = Annotated[bytes, msgspec.Meta(min_length=32, max_length=32)]
Query = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
#: Why a report is made: 1–200 characters, one line, no control characters (C0, DEL, C1), so
#: it can't fake lines or send escape sequences to a moderator's terminal. ``\A``/``\Z``, not
#: ``^``/``$``: Python's ``$`` also matches before a final newline.
Reason = Annotated[
    str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\A[^\x00-\x1f\x7f-\x9f]*\Z")
]


# --- client → relay -------------------------------------------------------------------


class Auth(Frame, tag="auth"):
    """Answer to `challenge`: the Ed25519 signature over ``auth_message(...)`` (§3)."""

    handle: Handle
    signature: Signature
    #: The holder's local time minus UTC, in minutes: sent only by a client whose holder is
    #: under 18, for the time-of-night signal (§3.2, docs/SIGNALS.md). Not signed: a client
    #: that lies about it only changes its own holder's notices.
    utc_offset_minutes: Annotated[int, msgspec.Meta(ge=-720, le=840)] | None = None


class Send(Frame, tag="send"):
    """One message to one account. ``id`` is chosen by the sender and makes resends idempotent."""

    id: MessageId
    to: Handle
    mode: Mode
    body: Body
    #: e2ee only: the franking commitment (PROTOCOL.md §6.4); absent in visible mode.
    commitment: Commitment | None = None
    #: A blob uploaded before this message (PROTOCOL.md §6.6); absent (never null) without.
    attachment: AttachmentRef | msgspec.UnsetType = msgspec.UNSET


class MessageRef(msgspec.Struct, frozen=True, kw_only=True):
    """Names one delivered message: the sender's handle and the sender's id for it."""

    sender: Handle = msgspec.field(name="from")
    id: MessageId


class Ack(Frame, tag="ack"):
    """The recipient has stored these messages; the relay deletes them."""

    refs: Annotated[list[MessageRef], msgspec.Meta(min_length=1, max_length=MAX_ACK_REFS)]


class ContactRequest(Frame, tag="contact_request"):
    """Ask to connect with ``to`` (PROTOCOL.md §6.2)."""

    rid: RequestId
    to: Handle


class ContactRespond(Frame, tag="contact_respond"):
    """Accept or decline the pending request from ``handle``."""

    rid: RequestId
    handle: Handle
    accept: bool


class ContactsList(Frame, tag="contacts_list"):
    rid: RequestId


class Search(Frame, tag="search"):
    """Directory search by handle or display-name prefix; the policy filters the results."""

    rid: RequestId
    query: Query


class Block(Frame, tag="block"):
    rid: RequestId
    handle: Handle


class Unblock(Frame, tag="unblock"):
    rid: RequestId
    handle: Handle


class ReportedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message as the reporter's client has it (unverified in visible mode)."""

    id: MessageId
    sender: Handle = msgspec.field(name="from")
    to: Handle
    text: Body
    sent_at: Time | None = None
    #: For an e2ee message the reporter received: the franking evidence (PROTOCOL.md §6.4)
    #: that lets the relay verify the text. All three or none.
    franking_key: FrankingKey | None = None
    commitment: Commitment | None = None
    franking_tag: Commitment | None = None
    #: For a franked message that carried a file: the file's SHA-256 (base64, 32 bytes),
    #: which its commitment covers (§6.6.1). The file itself is never sent in a report.
    attachment_sha256: Commitment | None = None


class Report(Frame, tag="report"):
    rid: RequestId
    handle: Handle
    reason: Reason
    messages: Annotated[list[ReportedMessage], msgspec.Meta(max_length=MAX_REPORTED_MESSAGES)] = []


class SetBirthdate(Frame, tag="set_birthdate"):
    """Self-service birth-date change with a fresh signed declaration."""

    rid: RequestId
    birthdate: date
    declaration: AgeDeclaration


KeyId = Annotated[int, msgspec.Meta(ge=0, le=2**32 - 1)]


class Redeclare(Frame, tag="redeclare"):
    """A fresh signed declaration of the band the relay already holds (PROTOCOL.md §3.3).

    Clients re-sign theirs every few days so a peer's client can tell a current "minor"
    declaration from an old one (THREAT_MODEL.md "Downgrade": fail closed).
    """

    rid: RequestId
    declaration: AgeDeclaration


class SignedPrekey(msgspec.Struct, frozen=True, kw_only=True):
    """X3DH signed prekey: Ed25519 signature by the identity key over 0x05 ‖ public."""

    id: KeyId
    public: PublicKey
    signature: Signature


class OneTimePrekey(msgspec.Struct, frozen=True, kw_only=True):
    id: KeyId
    public: PublicKey


class UploadPrekeys(Frame, tag="upload_prekeys"):
    """Publish a (new) signed prekey and/or a batch of one-time prekeys (issue #4)."""

    rid: RequestId
    signed_prekey: SignedPrekey | None = None
    one_time_prekeys: Annotated[
        list[OneTimePrekey], msgspec.Meta(max_length=MAX_PREKEYS_PER_UPLOAD)
    ] = []


class FetchBundle(Frame, tag="fetch_bundle"):
    """Ask for another account's key bundle: to start an X3DH session with it, or (with
    ``one_time_prekey`` false) only to learn the conversation's mode and its declaration."""

    rid: RequestId
    handle: Handle
    one_time_prekey: bool = True


class GuardianInvite(Frame, tag="guardian_invite"):
    """Ask ``handle`` to link as guardian and ward (PROTOCOL.md §6.7): the adult of the two
    is the guardian. Nothing is linked until they accept."""

    rid: RequestId
    handle: Handle


class GuardianAccept(Frame, tag="guardian_accept"):
    """Accept ``handle``'s invitation: the link takes effect."""

    rid: RequestId
    handle: Handle


class GuardianUnlink(Frame, tag="guardian_unlink"):
    """End the link with ``handle`` (or withdraw or refuse an invitation), at once."""

    rid: RequestId
    handle: Handle


class GuardianList(Frame, tag="guardian_list"):
    """Your guardians or wards, invitations, and approvals waiting."""

    rid: RequestId


class GuardianDecide(Frame, tag="guardian_decide"):
    """A guardian's answer to a ward's new adult contact waiting for approval."""

    rid: RequestId
    ward: Handle
    contact: Handle
    approve: bool


# --- relay → client -------------------------------------------------------------------


class Challenge(Frame, tag="challenge"):
    """First frame on every connection."""

    nonce: Nonce
    relay_id: str
    server_time: Time


class Ready(Frame, tag="ready"):
    """Authentication succeeded."""

    handle: Handle
    server_time: Time


class Synced(Frame, tag="synced"):
    """Everything that was queued for this account when it connected has been sent."""


class Accepted(Frame, tag="accepted"):
    """The relay stored the `send` with this id durably (or had already stored it)."""

    id: MessageId
    conversation: ConversationId
    sent_at: Time
    #: It will be delivered as a message request (the recipient accepts or declines first).
    request: bool = False


class Deliver(Frame, tag="deliver"):
    """A message or event for the connected account. Acknowledge it with `ack` once stored.

    ``kind`` is ``message`` (from ``from``), or ``system``/``notice`` (from the relay, whose
    ``from`` is the reserved handle ``agechat``, with a ``code``). ``request`` marks a
    message that arrives as a message request (the sender is not a contact yet).
    """

    id: MessageId
    sender: Handle = msgspec.field(name="from")
    to: Handle
    conversation: ConversationId
    mode: Mode
    body: Body
    sent_at: Time
    kind: Kind = "message"
    code: str | None = None
    request: bool = False
    #: e2ee only: the sender's franking commitment and the relay's tag over it (§6.4).
    commitment: Commitment | None = None
    franking_tag: Commitment | None = None
    #: The message's attachment (PROTOCOL.md §6.6): download it before acknowledging.
    #: Absent (never null) when there is none.
    attachment: AttachmentRef | msgspec.UnsetType = msgspec.UNSET


class Error(Frame, tag="error"):
    """A refusal. ``ref`` is the id of the `send` it refers to, when there is one."""

    code: str
    message: str
    ref: str | None = None


class Delivered(Frame, tag="delivered"):
    """The recipient acknowledged the sender's message ``id`` (a delivery receipt).

    Best effort: sent only while the sender is connected; not stored.
    """

    id: MessageId
    to: Handle
    delivered_at: Time


class Bundle(Frame, tag="bundle"):
    """A key bundle: the conversation's mode as the relay decides it, the identity key, the
    account's own signed age declaration, the current signed prekey, and one one-time
    prekey (handed out once, and only in e2ee mode; null when none are left, and X3DH
    proceeds without it). In visible mode the prekeys may be null: the bundle is then
    asked for the declaration, which the client checks before it sends in the clear."""

    rid: RequestId
    handle: Handle
    mode: Mode
    identity_key: PublicKey
    declaration: AgeDeclaration
    signed_prekey: SignedPrekey | None = None
    one_time_prekey: OneTimePrekey | None = None


class PrekeysLow(Frame, tag="prekeys_low"):
    """This account's stock of one-time prekeys is low: upload more."""

    remaining: int


class Done(Frame, tag="done"):
    """A request (contact_request, contact_respond, block, unblock, report, set_birthdate)
    succeeded. ``outcome`` says how, e.g. ``requested``, ``connected``, ``declined``."""

    rid: RequestId
    outcome: str


class ContactEntry(msgspec.Struct, frozen=True, kw_only=True):
    handle: Handle
    display_name: str
    #: connected | incoming_request | outgoing_request | declined | declined_by_you |
    #: awaiting_guardian | blocked
    state: str
    #: The conversation's mode; null for someone you blocked or who declined you (it
    #: would tell you their age group).
    mode: Mode | None
    #: True when this contact is an adult the relay has restricted from contacting minors
    #: (only shown to minors, so they can be careful).
    restricted: bool = False


class ContactsResult(Frame, tag="contacts"):
    rid: RequestId
    contacts: list[ContactEntry]


class GuardiansResult(Frame, tag="guardians"):
    """The answer to `guardian_list`: the policy's guardian rules (so a client can say what
    a guardian sees), your links and invitations, and the approvals waiting — for a
    guardian, those they may decide; for a ward, their own."""

    rid: RequestId
    rules: Guardians
    links: list[GuardianLink]
    approvals: list[GuardianApproval]


class Person(msgspec.Struct, frozen=True, kw_only=True):
    handle: Handle
    display_name: str


class SearchResult(Frame, tag="search_result"):
    rid: RequestId
    results: list[Person]


ClientFrame = (
    Auth
    | Send
    | Ack
    | ContactRequest
    | ContactRespond
    | ContactsList
    | Search
    | Block
    | Unblock
    | Report
    | SetBirthdate
    | Redeclare
    | UploadPrekeys
    | FetchBundle
    | GuardianInvite
    | GuardianAccept
    | GuardianUnlink
    | GuardianList
    | GuardianDecide
    | GroupCreate
    | GroupAdd
    | GroupRemove
    | GroupLeave
    | GroupRename
    | GroupRespond
    | GroupList
    | GroupSend
    | ModRequest
)
RelayFrame = (
    Challenge
    | Ready
    | Synced
    | Accepted
    | Deliver
    | Delivered
    | Error
    | Done
    | ContactsResult
    | SearchResult
    | Bundle
    | PrekeysLow
    | GuardiansResult
    | GroupResult
    | GroupsResult
    | ModAnswer
)


def _tags(union: object) -> frozenset[str]:
    return frozenset(str(t.__struct_config__.tag) for t in get_args(union))


#: Every frame type each side accepts, derived from the unions (one source of truth).
CLIENT_FRAME_TYPES: frozenset[str] = _tags(ClientFrame)
RELAY_FRAME_TYPES: frozenset[str] = _tags(RelayFrame)

#: The relay's own handle as the sender of system and notice events; never registrable.
RELAY_HANDLE = "agechat"
RESERVED_HANDLES: frozenset[str] = frozenset(
    {RELAY_HANDLE, "admin", "relay", "system", "root", "moderator", "safety", "safety_team"}
    | {"staff", "support"}
)


def conversation_id(a: str, b: str) -> str:
    """The id of the one-to-one conversation between two handles, the same from both ends."""
    first, second = sorted((a, b))
    return f"dm:{first}:{second}"
