"""Moderation frames (PROTOCOL.md §6.5) and the signature each request carries.

A moderator uses their own account. Besides the connection's login, every moderation
request is signed with the moderator's identity key over the connection's challenge nonce
and the request's own fields, so each decision in the audit log carries a signature the
moderator can't deny, and a request can't be replayed on another connection.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Annotated, Literal

import msgspec

from protocol.frame_base import Frame
from protocol.guardians import GuardianContext
from protocol.types import Handle, MessageId, Mode, Signature, Time

MODERATION_CONTEXT = b"agechat/moderation/v1"
#: What a request carries before ``sign_request`` fills in its signature.
PLACEHOLDER_SIGNATURE = bytes(64)

Role = Literal["moderator", "child_safety_moderator", "admin"]
ROLES: tuple[Role, ...] = ("moderator", "child_safety_moderator", "admin")
Action = Literal["dismiss", "warn", "restrict", "suspend", "reinstate", "escalate"]
ACTIONS: tuple[Action, ...] = ("dismiss", "warn", "restrict", "suspend", "reinstate", "escalate")
QueueName = Annotated[str, msgspec.Meta(pattern=r"\A[a-z_]{1,32}\Z")]
CaseId = Annotated[int, msgspec.Meta(ge=1, le=2**53)]
#: A moderator's note on a decision: up to 1,000 characters; newlines allowed, no other control
#: characters (C0, DEL, C1). ``\A``/``\Z``, not ``^``/``$`` (Python's ``$`` matches before a
#: final newline).
Note = Annotated[str, msgspec.Meta(max_length=1000, pattern=r"\A[^\x00-\x09\x0b-\x1f\x7f-\x9f]*\Z")]
#: Whether the relay could check that a piece of evidence is what its sender sent: a franked
#: e2ee message it verified, or the reporter's copy, which it can't check.
Franking = Literal["verified", "unverified"]

# --- client → relay: every one has `rid` and `signature` ------------------------------------


class ModQueues(Frame, tag="mod_queues"):
    """The queues this moderator may see, with pending counts."""

    rid: MessageId
    signature: Signature


class ModQueue(Frame, tag="mod_queue"):
    """The open cases of one queue, highest priority first."""

    rid: MessageId
    queue: QueueName
    signature: Signature


class ModNext(Frame, tag="mod_next"):
    """Take the next unassigned case of a queue (one case per moderator at a time)."""

    rid: MessageId
    queue: QueueName
    signature: Signature


class ModCase(Frame, tag="mod_case"):
    """One case in full, its evidence's content hidden."""

    rid: MessageId
    case_id: CaseId
    signature: Signature


class ModReveal(Frame, tag="mod_reveal"):
    """Show a case's evidence content (audited: who, which case, when)."""

    rid: MessageId
    case_id: CaseId
    signature: Signature


class ModDecide(Frame, tag="mod_decide"):
    """Act on a case: the action, with a note; audited and signed."""

    rid: MessageId
    case_id: CaseId
    action: Action
    signature: Signature
    note: Note = ""


class ModOverview(Frame, tag="mod_overview"):
    """Pending by queue, decisions by moderator and action, median time to decision."""

    rid: MessageId
    signature: Signature


class ModPreview(Frame, tag="mod_preview"):
    """The CyberTipline draft `escalate` would write for the case now, with this note,
    written nowhere. It shows the case's evidence content, so it is audited like a reveal."""

    rid: MessageId
    case_id: CaseId
    signature: Signature
    note: Note = ""


ModRequest = (
    ModQueues | ModQueue | ModNext | ModCase | ModReveal | ModDecide | ModOverview | ModPreview
)

# --- relay → client -------------------------------------------------------------------------


class QueueSummary(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    priority: int
    pending: int  # open cases nobody has decided yet
    unassigned: int


class CaseSummary(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    subject: Handle
    queue: str
    status: Literal["open", "closed"]
    assignee: str | None
    opened_at: Time
    score: float  # the highest finding score
    findings: int
    sources: list[str]


class FindingView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    source: str  # user_report | restriction | refusals_to_minors | …
    score: float
    explanation: str
    reporter: Handle | None
    involves_minor: bool
    evidence: list[int]
    created_at: Time


class EvidenceRef(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of evidence without its content (content is hidden until revealed)."""

    id: int
    sender: Handle
    recipient: Handle
    mode: Mode
    sent_at: Time
    franking: Franking
    chars: int


class DecisionView(msgspec.Struct, frozen=True, kw_only=True):
    moderator: Handle
    action: Action
    note: str
    decided_at: Time


class SubjectView(msgspec.Struct, frozen=True, kw_only=True):
    handle: Handle
    display_name: str
    band: str
    account_age_days: int
    contacts: int
    minor_contacts: int
    restricted: bool
    suspended: bool


class CaseView(msgspec.Struct, frozen=True, kw_only=True):
    summary: CaseSummary
    subject: SubjectView
    findings: list[FindingView]
    evidence: list[EvidenceRef]
    decisions: list[DecisionView]
    prior_cases: list[CaseSummary]
    #: Guardian links around the subject (issue #16): their guardians or wards, approvals
    #: waiting, and the latest views, approvals and notices.
    guardians: GuardianContext = msgspec.field(default_factory=GuardianContext)


class EvidenceItem(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    sender: Handle
    recipient: Handle
    mode: Mode
    sent_at: Time
    franking: Franking
    text: str


class DecisionCount(msgspec.Struct, frozen=True, kw_only=True):
    moderator: Handle
    action: Action
    count: int


class ModQueuesResult(Frame, tag="mod_queues_result"):
    rid: MessageId
    queues: list[QueueSummary]


class ModCases(Frame, tag="mod_cases"):
    rid: MessageId
    queue: str
    cases: list[CaseSummary]


class ModCaseResult(Frame, tag="mod_case_result"):
    rid: MessageId
    case: CaseView


class ModEvidence(Frame, tag="mod_evidence"):
    rid: MessageId
    case_id: int
    items: list[EvidenceItem]


class ModOverviewResult(Frame, tag="mod_overview_result"):
    rid: MessageId
    queues: list[QueueSummary]
    decisions: list[DecisionCount]
    median_seconds_to_decision: float | None


class ModPreviewResult(Frame, tag="mod_preview_result"):
    rid: MessageId
    case_id: int
    #: The report document (XML), exactly as `escalate` would write it now.
    document: str


ModAnswer = (
    ModQueuesResult | ModCases | ModCaseResult | ModEvidence | ModOverviewResult | ModPreviewResult
)

# --- the signature ----------------------------------------------------------------------------


def _fields(frame: ModRequest) -> tuple[str, ...]:
    """The request's own fields, in a fixed order, as text (PROTOCOL.md §6.5)."""
    if isinstance(frame, ModQueue | ModNext):
        return (frame.queue,)
    if isinstance(frame, ModCase | ModReveal):
        return (str(frame.case_id),)
    if isinstance(frame, ModDecide):
        return (str(frame.case_id), frame.action, frame.note)
    if isinstance(frame, ModPreview):
        return (str(frame.case_id), frame.note)
    return ()


def request_message(relay_id: str, nonce: bytes, handle: str, frame: ModRequest) -> bytes:
    """The bytes a moderator signs: context, relay id, the connection's challenge nonce, the
    moderator's handle, the frame's type and rid, then its fields; each length-prefixed."""
    tag = str(type(frame).__struct_config__.tag)
    parts = (
        MODERATION_CONTEXT,
        relay_id.encode(),
        nonce,
        handle.encode(),
        tag.encode(),
        frame.rid.encode(),
        *(f.encode() for f in _fields(frame)),
    )
    return b"".join(struct.pack(">H", len(p)) + p for p in parts)


def sign_request(
    sign: Callable[[bytes], bytes], relay_id: str, nonce: bytes, handle: str, frame: ModRequest
) -> ModRequest:
    """``frame`` with its signature, made by ``sign(message) -> signature``."""
    message = request_message(relay_id, nonce, handle, frame)
    return msgspec.structs.replace(frame, signature=sign(message))
