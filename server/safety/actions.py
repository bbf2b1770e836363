"""What a moderator's decision does: to the account, to the people who must know, to the
case, and to the audit log (signed by the moderator)."""

from __future__ import annotations

import logging
from pathlib import Path

from protocol.frames import RELAY_HANDLE, Error
from protocol.moderation import Action
from server.delivery.hub import Hub
from server.safety.cybertip import Reporter
from server.safety.escalation import escalate
from server.safety.service import CLOSING, SafetyService

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


async def decide(
    safety: SafetyService,
    hub: Hub,
    moderator: str,
    case_id: int,
    action: Action,
    note: str,
    signature: bytes,
    outbox: Path,
    reporter: Reporter,
) -> str:
    """Apply ``action`` to the case's subject; returns the outcome word for `done`."""
    case = await safety.require_case(moderator, case_id)
    subject, social = case.subject, safety.social
    if action == "warn":
        await social.emit(
            subject,
            "notice",
            "moderator_warning",
            "A moderator reviewed reports about your account and warns you"
            + (f": {note}" if note else ".")
            + " More reports can lead to restriction or suspension.",
            RELAY_HANDLE,
        )
    elif action == "restrict":
        await social.restrict_by_moderator(subject, note)
        await safety.save_flags(subject, by=moderator)
    elif action == "suspend":
        safety.suspended.add(subject)
        await safety.save_flags(subject, by=moderator)
        connection = hub.connection(subject)
        if connection is not None:
            notice = Error(code="account_suspended", message="This account is suspended.")
            await connection.close(CLOSE_SUSPENDED, "account_suspended", notice)
    elif action == "reinstate":
        safety.suspended.discard(subject)
        social.lift_moderator_restriction(subject)
        await safety.save_flags(subject, by=moderator)
        await social.emit(
            subject,
            "system",
            "reinstated",
            "A moderator reinstated your account." + (f" Note: {note}" if note else ""),
            RELAY_HANDLE,
        )
    elif action == "escalate":
        report = await escalate(safety, case, note, outbox, reporter)
        log.info("cybertipline draft written case=%d file=%s (never sent)", case.id, report.name)
    now = safety.clock()
    detail: dict[str, object] = {"case": case.id, "note": note, "signature": signature.hex()}
    await safety.cases.decide(
        case.id, moderator, action, note, action in CLOSING, now, audit=(subject, detail)
    )
    log.info("decision case=%d action=%s", case.id, action)
    return OUTCOMES[action]
