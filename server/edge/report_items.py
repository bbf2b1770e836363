"""The messages a `report` attaches, checked and normalised before anything is filed
(PROTOCOL.md §6.2 `report`, §6.4). Pure: the relay's clock reading is passed in.

A report carries messages "as the reporter's client has it". An encrypted message with
franking evidence is verified by the relay (``server.keys.franking.check_report``), which
binds its sender, recipient, text and time. Anything else is the reporter's word, and it
reaches a moderator's case, and later perhaps a CyberTipline draft, so the relay holds it
to what the reporter can truthfully know:

- **Only their own conversation.** A message must be between the reporter and the account
  reported, in either direction. A report naming anyone else is refused whole
  (``report_item_foreign``), not rewritten: relabelling a message would mislabel evidence,
  and filing it would let a reporter make up a conversation between two other people, who
  would then appear in a case (and, if one is a minor, as a victim in an escalation).
- **No time outside the relay's past.** ``sent_at`` is kept, or left out (the safety
  service files "now"), but a time after the relay's clock is clamped to that clock, and
  one before the Unix epoch up to the epoch. There is deliberately no tolerance for a
  client clock running a little ahead: a time even a minute in the future would still be
  in the future if a moderator escalated the case within that minute, and the CyberTipline
  report check refuses future times. Times before the epoch are impossible on this relay
  (the franking check already refuses them on franked messages), and some, with a large
  time-zone offset, don't even convert back from the stored timestamp, which would break
  every read of the case they join. Times between the epoch and account creation are left
  as claimed: the moderator sees them marked unverified, and a lower bound would add a
  lookup for little.
- **Each message once.** A message is named by its sender and id (the relay's own key for
  stored messages), and only its first copy is kept. Deduplicating by id alone would let
  one party drop the other's message from a report by reusing its id.

Run the franking check on the report as it came, then ``first_foreign``, then
``normalise``. The franking check comes first so that a franked message moved onto other
people keeps its answer, ``franking_invalid`` (its sender and recipient are part of what the
relay verifies); every franked message that passes is between the two, so
``report_item_foreign`` is about unverified messages only. ``normalise`` runs last because
the franking check verifies the time as claimed: a verified message's time is the relay's
own, in the past unless the relay's clock went back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec

from protocol.frames import ReportedMessage

#: The wire code for a report attaching a message outside the reporter's conversation.
FOREIGN: Final = "report_item_foreign"

#: The earliest ``sent_at`` kept; earlier claims are raised to it.
EARLIEST_SENT_AT: Final = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Items:
    """A report's messages as they are filed, each with whether franking verified it."""

    messages: list[ReportedMessage]
    verified: list[bool]
    #: How many later copies of a message were dropped, and how many times were clamped.
    duplicates: int = 0
    clamped: int = 0


def is_between(message: ReportedMessage, reporter: str, reported: str) -> bool:
    """Is this message from one of the two to the other (either direction)?"""
    return {message.sender, message.to} == {reporter, reported} and reporter != reported


def first_foreign(messages: Sequence[ReportedMessage], reporter: str, reported: str) -> int | None:
    """The position of the first message that isn't between ``reporter`` and ``reported``;
    ``None`` when every one is (the report may go on)."""
    for position, message in enumerate(messages):
        if not is_between(message, reporter, reported):
            return position
    return None


def clamp_sent_at(sent_at: datetime | None, now: datetime) -> datetime | None:
    """``sent_at`` within [EARLIEST_SENT_AT, now]; ``None`` stays ``None``."""
    if sent_at is None:
        return None
    if sent_at > now:
        return now
    if sent_at < EARLIEST_SENT_AT:
        return EARLIEST_SENT_AT
    return sent_at


def normalise(
    messages: Sequence[ReportedMessage], verified: Sequence[bool], now: datetime
) -> Items:
    """Keep the first copy of each (sender, id) with its verification, and clamp its time.
    ``verified`` runs beside ``messages`` (``check_report``'s answer for them)."""
    if len(messages) != len(verified):
        raise ValueError("one verification per reported message")
    seen: set[tuple[str, str]] = set()
    kept: list[ReportedMessage] = []
    flags: list[bool] = []
    clamped = 0
    for message, ok in zip(messages, verified, strict=True):
        key = (message.sender, message.id)
        if key in seen:
            continue
        seen.add(key)
        sent_at = clamp_sent_at(message.sent_at, now)
        if sent_at is not message.sent_at:
            clamped += 1
            message = msgspec.structs.replace(message, sent_at=sent_at)
        kept.append(message)
        flags.append(ok)
    return Items(kept, flags, duplicates=len(messages) - len(kept), clamped=clamped)
