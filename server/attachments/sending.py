"""A `send` that names an attachment (PROTOCOL.md §6.6): the blob must be the sender's, as
uploaded, in the message's mode, and not used by another message; a `visible` one is
matched against the hash banks before anything else is decided (docs/MODERATION.md "Hash
matching").

A match holds the message — it is never stored or delivered — keeps the blob as case
evidence, opens or joins a `child_safety` case with the match details, and (if the policy
says so) restricts the sender pending review. The sender gets the answer the send would
have had without the file: a policy refusal, or `accepted` like a message a block drops.

Two steps, because the policy decision sits between them: `screen` (no state changes
except a hold) before the policy, `claim` (the blob becomes the message's) after it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import msgspec
from aiohttp import web

from protocol.attachments import AttachmentRef
from protocol.frames import Send
from server.app_keys import BLOBS, MATCHER, SAFETY, STORE
from server.safety.hashing import Match

log = logging.getLogger("agechat.relay.attachments")

#: Matches running at once: each decodes an image in a worker thread (memory and CPU).
MATCH_SLOTS = 2
_slots: dict[int, asyncio.Semaphore] = {}


@dataclass(frozen=True, slots=True)
class Screened:
    """What the relay will store with the message (``ref``), or why not: a refusal code,
    or ``held`` (a hash match: answer as if stored, never deliver)."""

    ref: AttachmentRef | None = None
    refusal: str | None = None
    detail: str | None = None
    held: bool = False
    #: A resend of a message the relay already holds: nothing to claim again.
    resend: bool = False
    #: The banks it matched: `hold` must run (after the policy decision, so that the
    #: restriction a match may bring doesn't change this send's own answer).
    matches: tuple[Match, ...] = ()
    #: An image too large to decode for matching: held for a person to review.
    unscannable: bool = False


#: The answer for a message without an attachment (most): nothing to screen, hold or claim.
NOTHING_ATTACHED = Screened()


def _slots_for(app: web.Application) -> asyncio.Semaphore:
    key = id(app)
    if key not in _slots:
        _slots[key] = asyncio.Semaphore(MATCH_SLOTS)
    return _slots[key]


async def screen(app: web.Application, sender: str, frame: Send) -> Screened:
    ref = frame.attachment
    if ref is msgspec.UNSET:
        return NOTHING_ATTACHED
    # A resend of a message already stored gets the first answer, whatever became of its
    # blob since (delivered and deleted, or dropped by a block).
    stored = await app[STORE].find_message(sender, frame.id)
    if stored is not None and stored.attachment is not None and stored.attachment.id == ref.id:
        return Screened(ref=stored.attachment, resend=True)
    blobs = app[BLOBS]
    blob = await blobs.get(sender, ref.id)
    if blob is None:
        return Screened(refusal="unknown_attachment")
    if blob.state == "held":
        return Screened(held=True)  # a resend of a held one: the same answer
    if blob.size != ref.size or blob.mode != frame.mode:
        return Screened(refusal="attachment_mismatch", detail="size or mode")
    if blob.state != "uploaded":
        return Screened(refusal="attachment_in_use")
    if frame.mode == "e2ee":
        # The name, type and digest travel inside the encrypted message, never beside it.
        if ref.name is not None or ref.type is not None or ref.sha256 is not None:
            return Screened(
                refusal="attachment_mismatch", detail="an e2ee reference carries only id and size"
            )
        return Screened(ref=AttachmentRef(id=ref.id, size=ref.size))
    if ref.name is None or ref.type is None:
        return Screened(
            refusal="attachment_mismatch", detail="a visible reference needs name and type"
        )
    # The relay's own digest, not the sender's word for it.
    checked = msgspec.structs.replace(ref, sha256=blob.sha256.hex())
    async with _slots_for(app):
        scan = await asyncio.to_thread(app[MATCHER].scan_path, blobs.path(sender, ref.id))
    if scan.matches:
        return Screened(ref=checked, held=True, matches=tuple(scan.matches))
    if scan.pdq_skipped == "too_large_to_decode":
        # An image nobody could check: held for review, or size would slip past matching.
        return Screened(ref=checked, held=True, unscannable=True)
    return Screened(ref=checked)


async def hold(app: web.Application, sender: str, to: str, screened: Screened) -> None:
    """Keep a matched blob as evidence and file the finding (which may restrict the
    sender pending review)."""
    if screened.ref is None or not (screened.matches or screened.unscannable):
        return
    # The finding first: a hold with no evidence row would never be swept.
    if screened.matches:
        await app[SAFETY].on_hash_match(sender, to, screened.ref, screened.matches)
    else:
        await app[SAFETY].on_unscannable(sender, to, screened.ref)
    await app[BLOBS].hold(sender, screened.ref.id)
    log.info("attachment held: hash match sender=%s id=%s", sender, screened.ref.id)


async def claim(app: web.Application, sender: str, screened: Screened) -> str | None:
    """Make the screened blob the message's; a refusal code if another message took it."""
    if screened.ref is None or screened.resend:
        return None
    if not await app[BLOBS].attach(sender, screened.ref.id):
        return "attachment_in_use"
    return None
