"""A `send` that names an attachment (PROTOCOL.md §6.6): the blob must be the sender's, as
uploaded, not yet used by another message; a `visible` one is matched against the hash
banks before the message is accepted (docs/MODERATION.md "Hash matching").

A match holds the message — it is never stored or delivered — keeps the blob as case
evidence, opens or joins a `child_safety` case with the match details, and (if the policy
says so) restricts the sender pending review. The sender is told only
`message_not_delivered`: nothing says why.
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

log = logging.getLogger("agechat.relay.attachments")


@dataclass(frozen=True, slots=True)
class AttachmentCheck:
    """The reference to store with the message, or why the send is refused."""

    ref: AttachmentRef | None = None
    refusal: str | None = None
    detail: str | None = None


async def check_attachment(app: web.Application, sender: str, frame: Send) -> AttachmentCheck:
    ref = frame.attachment
    if ref is msgspec.UNSET:
        return AttachmentCheck()
    blobs = app[BLOBS]
    blob = await blobs.get(sender, ref.id)
    if blob is None:
        return AttachmentCheck(refusal="unknown_attachment")
    if blob.state == "held":
        return AttachmentCheck(refusal="message_not_delivered")  # a resend of a held one
    if blob.size != ref.size or blob.mode != frame.mode:
        return AttachmentCheck(refusal="attachment_mismatch", detail="size or mode")
    if blob.state == "attached":
        # A resend of the message that already names it is fine (sends are idempotent).
        stored = await app[STORE].find_message(sender, frame.id)
        if stored is not None and stored.attachment is not None and stored.attachment.id == ref.id:
            return AttachmentCheck(ref=stored.attachment)
        return AttachmentCheck(refusal="attachment_in_use")
    if frame.mode == "e2ee":
        # The name, type and digest travel inside the encrypted message, never beside it.
        if ref.name is not None or ref.type is not None or ref.sha256 is not None:
            return AttachmentCheck(
                refusal="attachment_mismatch", detail="an e2ee reference carries only id and size"
            )
        checked = AttachmentRef(id=ref.id, size=ref.size)
    else:
        if ref.name is None or ref.type is None:
            return AttachmentCheck(
                refusal="attachment_mismatch", detail="a visible reference needs name and type"
            )
        # The relay's own digest, not the sender's word for it.
        checked = msgspec.structs.replace(ref, sha256=blob.sha256.hex())
        path = blobs.path(sender, ref.id)
        matches = await asyncio.to_thread(app[MATCHER].match_path, path)
        if matches:
            await blobs.hold(sender, ref.id)
            await app[SAFETY].on_hash_match(sender, frame.to, checked, matches)
            log.info("attachment held: hash match sender=%s id=%s", sender, ref.id)
            return AttachmentCheck(refusal="message_not_delivered")
    if not await blobs.attach(sender, ref.id):
        return AttachmentCheck(refusal="attachment_in_use")
    return AttachmentCheck(ref=checked)
