"""What a moderator's decision does: to the account, to the people who must know, to the
case, and to the audit log (with the moderator's signed request).

Order matters. Everything is checked first; then the decision, its audit entry, the case's
closing, the account's new flags and the withdrawal of the subject's undelivered messages
are written in one transaction; only then do the in-memory flags change and the notices go
out. A crash between the two leaves the database right (the relay loads flags from it at
start); the notices of that one decision may be lost.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from protocol import policy as rules
from protocol.frames import RELAY_HANDLE, Error
from protocol.moderation import Action
from server.delivery.hub import Hub
from server.safety.cybertip import Reporter
from server.safety.escalation import escalate, preview
from server.safety.service import CLOSING, ModerationError, SafetyService, SignedRequest
from server.safety.store import UNKNOWN_PRIORITY, AccountFlags, CaseClosed, CaseRow, Hold

log = logging.getLogger("agechat.relay.safety")

#: WebSocket close code for a suspended account (RFC 6455 §7.4.2: 4000–4999 are ours).
CLOSE_SUSPENDED = 4004
OUTCOMES: dict[str, str] = {
    "dismiss": "dismissed",
    "warn": "warned",
    "restrict": "restricted",
    "suspend": "suspended",
    "reinstate": "reinstated",
    "escalate": "escalated",
}


def _new_flags(
    safety: SafetyService, moderator: str, case: CaseRow, action: Action, note: str
) -> AccountFlags | None:
    """The subject's flags after ``action`` (None: unchanged); refuses a reinstate that
    lifts nothing, or that would lift a decision taken in a queue this moderator can't see
    (a general moderator can't undo a child-safety restriction)."""
    current = safety.flags.get(case.subject, AccountFlags())
    # The flags keep the highest-priority queue that set any of them: a later general case
    # that restricts again doesn't hand a child-safety suspension to general moderators.
    priorities = safety.priorities()
    queue, set_by = case.queue, case.id
    if current.queue is not None and priorities.get(current.queue, UNKNOWN_PRIORITY) < (
        priorities.get(case.queue, UNKNOWN_PRIORITY)
    ):
        queue, set_by = current.queue, current.case_id
    if action == "restrict":
        return dataclasses.replace(
            current,
            restricted_by=moderator,
            restricted_reason=note,
            queue=queue,
            case_id=set_by,
        )
    if action == "suspend":
        return dataclasses.replace(current, suspended=True, queue=queue, case_id=set_by)
    if action == "reinstate":
        if not current.any:
            raise ModerationError("nothing_to_lift")
        if current.queue is not None and current.queue not in safety.visible_queues(moderator):
            raise ModerationError("forbidden")
        return AccountFlags()
    return None


def _hold(safety: SafetyService, action: Action) -> Hold | None:
    """Restrict withdraws the subject's undelivered messages to minors; suspend, all of
    them (they were accepted before the decision and must not arrive after it)."""
    social = safety.social

    def is_minor(handle: str) -> bool:
        return handle in social.accounts and rules.is_minor(social.band_of(handle))

    def explain(visible: int, e2ee: int) -> str:
        parts = [
            f"{visible} undelivered visible message{'s' if visible != 1 else ''} held as evidence"
        ]
        if e2ee:
            parts.append(
                f"{e2ee} end-to-end encrypted message{'s' if e2ee != 1 else ''} withdrawn unread"
            )
        return f"When the account was {OUTCOMES[action]}: " + "; ".join(parts) + "."

    if action == "restrict":
        return Hold(to=is_minor, is_minor=is_minor, seal=safety.seal, explain=explain)
    if action == "suspend":
        return Hold(to=lambda _: True, is_minor=is_minor, seal=safety.seal, explain=explain)
    return None


async def preview_escalation(
    safety: SafetyService,
    moderator: str,
    case_id: int,
    note: str,
    signed: SignedRequest,
    reporter: Reporter,
) -> str:
    """The draft `escalate` would write, for a moderator who could escalate the case now;
    audited like a reveal (it holds the evidence's content)."""
    case = await safety.require_case(moderator, case_id)
    if case.status != "open":
        raise ModerationError("case_closed")
    if (why := await safety.may_decide(moderator, case_id)) is not None:
        raise ModerationError(why)
    document = await preview(safety, case, note, reporter)
    await safety.audit.append(
        moderator,
        "preview_escalation",
        f"case:{case_id}",
        {"case": case_id, "note": note, **signed.detail()},
        safety.clock(),
    )
    return document


async def decide(
    safety: SafetyService,
    hub: Hub,
    moderator: str,
    case_id: int,
    action: Action,
    note: str,
    signed: SignedRequest,
    outbox: Path,
    reporter: Reporter,
) -> str:
    """Apply ``action`` to the case's subject; returns the outcome word for `done`.

    The note is the moderator's, kept with the decision and in the audit log; the subject
    is told what was decided in fixed words, never the note."""
    case = await safety.require_case(moderator, case_id)
    if case.status != "open" and action != "reinstate":
        raise ModerationError("case_closed")
    if (why := await safety.may_decide(moderator, case_id)) is not None:
        raise ModerationError(why)
    subject, social = case.subject, safety.social
    async with safety.flags_lock:
        flags = _new_flags(safety, moderator, case, action, note)
        if action == "escalate":
            report = await escalate(safety, case, note, outbox, reporter)
            log.info(
                "cybertipline draft written case=%d file=%s (never sent)", case.id, report.name
            )
        detail: dict[str, object] = {
            "case": case.id,
            "action": action,
            "note": note,
            **signed.detail(),
        }
        try:
            held = await safety.cases.decide(
                case.id,
                moderator,
                action,
                note,
                action in CLOSING,
                safety.clock(),
                audit=(subject, detail),
                flags=flags,
                hold=_hold(safety, action),
            )
        except CaseClosed:
            raise ModerationError("case_closed") from None
        if flags is not None:
            was_restricted = subject in social.moderator_restricted
            safety.apply_flags({**safety.flags, subject: flags})
            if flags.restricted_by is not None and not was_restricted:
                social.moderator_restricted.pop(subject, None)  # so the notices go out once
                await social.restrict_by_moderator(subject, note)
    log.info("decision case=%d action=%s held=%d", case.id, action, held)
    if action == "warn":
        social.emit(
            subject,
            "notice",
            "moderator_warning",
            "A moderator reviewed reports about your account and warns you: follow the "
            "rules. More reports can lead to restriction or suspension.",
            RELAY_HANDLE,
        )
    elif action == "suspend":
        connection = hub.connection(subject)
        if connection is not None:
            notice = Error(code="account_suspended", message="This account is suspended.")
            await connection.close(CLOSE_SUSPENDED, "account_suspended", notice)
    elif action == "reinstate":
        social.emit(
            subject,
            "system",
            "reinstated",
            "A moderator reinstated your account: earlier restrictions or suspension by "
            "moderators no longer apply.",
            RELAY_HANDLE,
        )
    return OUTCOMES[action]
