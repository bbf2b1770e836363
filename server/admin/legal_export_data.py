"""What a legal-process export reads from a relay's database (server/admin/legal_export.py).

Everything is read in one read transaction, so the files of one package describe one moment.
The rule for content is the relay's own: only what it can read. The SQL never selects an
end-to-end encrypted body or any franking commitment, and sealed evidence is opened only for
items the package may carry (visible messages, and encrypted ones whose franking verified
them); nothing else is decrypted.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiosqlite

from protocol.policy import band

#: The reason a message or an evidence item comes without its text.
ENCRYPTED = "end_to_end_encrypted"  # ciphertext: the relay can't read it
NOT_RETAINED = "not_retained"  # delivered, and deleted under the retention policy
UNVERIFIED = "unverified_encrypted"  # a reporter's claim about an e2ee message, unchecked


@dataclass(frozen=True, slots=True)
class Request:
    """What legal process asked for: one account, a range of whole UTC days."""

    handle: str
    first: date
    last: date
    process: str

    @property
    def start(self) -> float:
        return datetime(self.first.year, self.first.month, self.first.day, tzinfo=UTC).timestamp()

    @property
    def end(self) -> float:
        """The first instant after the range (the range is inclusive of ``last``)."""
        after = self.last + timedelta(days=1)
        return datetime(after.year, after.month, after.day, tzinfo=UTC).timestamp()

    def to_json(self) -> dict[str, str]:
        return {
            "account": self.handle,
            "from": self.first.isoformat(),
            "to": self.last.isoformat(),
            "process": self.process,
        }


class UnknownAccount(Exception):
    """The account named in the request has no record on this relay."""


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


async def _rows(db: aiosqlite.Connection, sql: str, params: tuple = ()) -> list[tuple]:
    async with db.execute(sql, params) as cur:
        return list(await cur.fetchall())


async def gather(
    db: aiosqlite.Connection,
    request: Request,
    now: datetime,
    open_sealed: Callable[[bytes], str],
) -> dict[str, dict[str, Any]]:
    """The package's files (name → JSON object), read in one snapshot of ``db`` (the store's
    reader connection). ``open_sealed`` opens a sealed evidence item. Raises UnknownAccount."""
    await db.execute("BEGIN")
    try:
        account = await _account(db, request, now)
        files = {
            "account.json": account,
            "contacts.json": await _contacts(db, request),
            "messages.json": await _messages(db, request),
            "evidence.json": await _evidence(db, request, open_sealed),
        }
    finally:
        await db.execute("COMMIT")
    return files


async def _account(db: aiosqlite.Connection, request: Request, now: datetime) -> dict[str, Any]:
    handle = request.handle
    found = await _rows(
        db,
        "SELECT handle, display_name, identity_key, dh_identity_key, birthdate, declaration, "
        "created_at FROM accounts WHERE handle = ?",
        (handle,),
    )
    if not found:
        raise UnknownAccount(handle)
    _, display_name, identity_key, dh_identity_key, birthdate, declaration, created_at = found[0]
    born = date.fromisoformat(birthdate)
    signed = json.loads(bytes(declaration))
    corrections = [
        {
            "at": _iso(created_at),
            "by": actor,
            "birth_date_before": detail.get("from"),
            "birth_date_after": detail.get("to"),
            "band_before": detail.get("band_from"),
            "band_after": detail.get("band_to"),
            "reason": detail.get("reason"),
            "audit_seq": seq,
        }
        for seq, actor, raw, created_at in await _rows(
            db,
            "SELECT id, actor, detail, created_at FROM audit "
            "WHERE action = 'set_birthdate' AND subject = ? ORDER BY id",
            (handle,),
        )
        for detail in (json.loads(raw),)
    ]
    flags = await _rows(
        db, "SELECT suspended, restricted_by FROM account_flags WHERE handle = ?", (handle,)
    )
    suspended, restricted_by = flags[0] if flags else (0, None)
    logins = await _rows(
        db,
        "SELECT address, logged_in_at FROM logins WHERE handle = ? "
        "AND logged_in_at >= ? AND logged_in_at < ? ORDER BY logged_in_at",
        (handle, request.start, request.end),
    )
    return {
        "handle": handle,
        "display_name": display_name,
        "identity_key": _b64(bytes(identity_key)),
        "dh_identity_key": _b64(bytes(dh_identity_key)),
        "birth_date": born.isoformat(),
        "age_band": band(born, now.date()),
        "created_at": _iso(created_at),
        "suspended": bool(suspended),
        "restricted": restricted_by is not None,
        "band_history": {
            "birth_date": born.isoformat(),
            "signed_declaration": {
                "band": signed.get("band"),
                "declared_at": signed.get("declared_at"),
            },
            "admin_corrections": corrections,
            "note": "The birth date is the one the relay holds now: declared by the account, "
            "or set by the last admin correction. Self-service re-declarations to a younger "
            "band are not logged; only the latest signed declaration is kept.",
        },
        "logins": [{"address": a, "at": _iso(t)} for a, t in logins],
    }


async def _contacts(db: aiosqlite.Connection, request: Request) -> dict[str, Any]:
    handle = request.handle
    contacts = [
        {
            "handle": high if low == handle else low,
            "state": state,
            "requested_by": requester,
            "created_at": _iso(created),
            "updated_at": _iso(updated),
        }
        for low, high, state, requester, created, updated in await _rows(
            db,
            "SELECT low, high, state, requester, created_at, updated_at FROM contacts "
            "WHERE low = ? OR high = ? ORDER BY created_at",
            (handle, handle),
        )
    ]
    blocks = await _rows(
        db,
        "SELECT blocker, blocked, created_at FROM blocks WHERE blocker = ? OR blocked = ? "
        "ORDER BY created_at",
        (handle, handle),
    )
    reports = [
        {
            "id": rid,
            "reporter": reporter,
            "reported": reported,
            "reason": reason,
            "conversation": conversation,
            "status": status,
            "created_at": _iso(created),
            "messages": [
                _reported_message(m, await _stored_mode(db, m)) for m in json.loads(bytes(evidence))
            ],
        }
        for rid, reporter, reported, reason, conversation, evidence, status, created in await _rows(
            db,
            "SELECT id, reporter, reported, reason, conversation, evidence, status, created_at "
            "FROM reports WHERE (reporter = ? OR reported = ?) AND created_at >= ? "
            "AND created_at < ? ORDER BY id",
            (handle, handle, request.start, request.end),
        )
    ]
    return {
        "account": handle,
        "contacts": contacts,
        "blocks_made": [{"handle": b, "at": _iso(t)} for a, b, t in blocks if a == handle],
        "blocked_by": [{"handle": a, "at": _iso(t)} for a, b, t in blocks if b == handle],
        "reports": reports,
    }


async def _stored_mode(db: aiosqlite.Connection, m: dict[str, Any]) -> str | None:
    """The mode the relay stored a reported message with, while it still has the row."""
    found = await _rows(
        db,
        "SELECT mode FROM messages WHERE sender = ? AND msg_id = ?",
        (m.get("from"), m.get("id")),
    )
    return str(found[0][0]) if found else None


def _reported_message(m: dict[str, Any], stored_mode: str | None) -> dict[str, Any]:
    """A message attached to a report, without its franking material: the text only when
    it was a visible message or an encrypted one whose franking the relay verified.

    A report tells encrypted messages by their franking evidence, which a reporter's own
    sent messages lack: the relay's stored row says what it really was, while it is kept."""
    encrypted = m.get("commitment") is not None or stored_mode == "e2ee"
    verified = bool(m.get("verified", False))
    out: dict[str, Any] = {
        "id": m.get("id"),
        "sender": m.get("from"),
        "recipient": m.get("to"),
        "sent_at": m.get("sent_at"),
        "mode": "e2ee" if encrypted else "visible",
        "franking": "verified" if verified else "unverified",
    }
    if encrypted and not verified:
        out["text"], out["withheld"] = None, UNVERIFIED
    else:
        out["text"] = m.get("text")
    return out


async def _messages(db: aiosqlite.Connection, request: Request) -> dict[str, Any]:
    # Only a visible body is ever selected: an e2ee body (ciphertext) and the commitment
    # never leave the database.
    rows = await _rows(
        db,
        "SELECT msg_id, sender, recipient, conversation, mode, sent_at, acked_at, size, "
        "CASE WHEN mode = 'visible' THEN body END FROM messages "
        "WHERE kind = 'message' AND (sender = ? OR recipient = ?) "
        "AND sent_at >= ? AND sent_at < ? ORDER BY sent_at, seq",
        (request.handle, request.handle, request.start, request.end),
    )
    messages = []
    for msg_id, sender, recipient, conversation, mode, sent_at, acked_at, size, text in rows:
        item: dict[str, Any] = {
            "id": msg_id,
            "sender": sender,
            "recipient": recipient,
            "conversation": conversation,
            "mode": mode,
            "sent_at": _iso(sent_at),
            "delivered_at": _iso(acked_at),
            "size": size,
        }
        if mode == "visible" and text is not None:
            item["text"] = text
        else:
            item["text"] = None
            item["withheld"] = ENCRYPTED if mode != "visible" else NOT_RETAINED
        messages.append(item)
    return {"account": request.handle, "messages": messages}


# A report records a reporter's own encrypted message (sent, so without franking evidence)
# as an unverified visible one: while the relay still holds that message's row (same sender,
# recipient and time), it is treated as what it was, an unverified encrypted one. The
# account's encrypted messages in the period are read once (`held`): no index of messages
# starts with the sender (delivery/store.py, schema v9), and a lookup per evidence item
# would read the whole table each time. Parameters: (handle, handle, start, end) twice.
_ENCRYPTED = (
    "(e.mode = 'e2ee' OR EXISTS (SELECT 1 FROM held m WHERE m.sender = e.sender "
    "AND m.recipient = e.recipient "
    "AND m.sent_at BETWEEN e.sent_at - 0.001 AND e.sent_at + 0.001))"
)
EVIDENCE_SQL = (
    "WITH held AS MATERIALIZED (SELECT sender, recipient, sent_at FROM messages "
    "WHERE kind = 'message' AND mode = 'e2ee' AND (sender = ? OR recipient = ?) "
    "AND sent_at >= ? - 0.001 AND sent_at < ? + 0.001) "
    f"SELECT e.id, e.case_id, c.subject, e.sender, e.recipient, {_ENCRYPTED}, e.sent_at, "
    f"e.franking, e.chars, CASE WHEN e.franking = 'verified' OR NOT {_ENCRYPTED} "
    "THEN e.sealed END FROM evidence e JOIN cases c ON c.id = e.case_id "
    "WHERE (e.sender = ? OR e.recipient = ?) AND e.sent_at >= ? AND e.sent_at < ? "
    "ORDER BY e.sent_at, e.id"
)


async def _evidence(
    db: aiosqlite.Connection, request: Request, open_sealed: Callable[[bytes], str]
) -> dict[str, Any]:
    # The sealed text is selected (and opened) only for items the package may carry
    # (EVIDENCE_SQL).
    rows = await _rows(
        db, EVIDENCE_SQL, (request.handle, request.handle, request.start, request.end) * 2
    )
    items = []
    for eid, case_id, subject, sender, recipient, e2ee, sent_at, franking, chars, sealed in rows:
        item: dict[str, Any] = {
            "id": eid,
            "case_id": case_id,
            "case_subject": subject,
            "sender": sender,
            "recipient": recipient,
            "mode": "e2ee" if e2ee else "visible",
            "sent_at": _iso(sent_at),
            "franking": franking,
            "chars": chars,
        }
        if sealed is not None:
            item["text"] = open_sealed(bytes(sealed))
        else:
            item["text"], item["withheld"] = None, UNVERIFIED
        items.append(item)
    return {"account": request.handle, "evidence": items}
