"""Every refusal's stable snake_case code and its human sentence.

Codes are a contract (tests, scripts and other clients match on them); sentences may be
reworded. docs/PROTOCOL.md §7 lists the wire codes; the client adds its own local ones in
``client.errors`` with the same shape.
"""

from __future__ import annotations

from typing import Final

# Wire error codes: the relay sends these in `error` frames and HTTP error bodies.
WIRE_ERRORS: Final[dict[str, str]] = {
    # Malformed input (PROTOCOL.md §7.1)
    "invalid_json": "The frame or request body is not valid UTF-8 JSON.",
    "invalid_frame": "The frame is missing a field or a field has the wrong type or size.",
    "unknown_frame_type": "The relay does not know this frame type.",
    "frame_too_large": "The frame is larger than the relay accepts.",
    "binary_not_supported": "The relay only accepts text frames.",
    # Authentication (§7.2)
    "not_authenticated": "Authenticate before sending anything else.",
    "already_authenticated": "This connection is already authenticated.",
    "auth_failed": "Authentication failed: unknown account or invalid signature.",
    "auth_timeout": "Authentication took too long.",
    "session_replaced": "This account connected again elsewhere; this connection is closed.",
    # Registration (§7.3)
    "invalid_handle": "Handles are 3 to 32 characters: lowercase letters, digits and _.",
    "handle_taken": "That handle is already taken.",
    "invalid_display_name": (
        "Display names are 1 to 64 characters, with no control, invisible or "
        "text-direction characters."
    ),
    "reserved_display_name": (
        "That display name reads as agechat or its staff (admin, moderator, safety team)."
    ),
    "invalid_key": "A public key is missing, the wrong size, or does not match the identity key.",
    "invalid_birthdate": "The birth date is not a real date in the past (YYYY-MM-DD).",
    "bad_signature": "The signature does not verify with the account's identity key.",
    "declaration_mismatch": "The signed age declaration does not match the registration.",
    "stale_declaration": "The signed age declaration is too old or from the future.",
    # Delivery (§7.4)
    "unknown_recipient": "There is no account with that handle.",
    "message_too_large": "The message is larger than the relay accepts.",
    "mode_mismatch": "The message's encryption mode does not match the conversation's.",
    "duplicate_id_conflict": "That message id was already used for a different message.",
    # Attachments (§6.6)
    "unknown_attachment": "There is no uploaded file with that id from this account.",
    "attachment_mismatch": "The attachment reference doesn't match the uploaded file.",
    "attachment_in_use": "That uploaded file is already attached to another message.",
    "attachment_too_large": "The file is larger than this relay's policy allows.",
    "attachment_quota_exceeded": "Your files waiting on the relay would pass your quota.",
    "blob_exists": "A different file was already uploaded under that id.",
    "upload_mismatch": "The uploaded bytes aren't the ones the request signed.",
    "stale_request": "The signed request's time is too far from the relay's clock.",
    "length_required": "The upload needs a Content-Length.",
    # HTTP requests
    "invalid_request": "The request body is missing a field or a field has the wrong type.",
    "request_too_large": "The request body is larger than the relay accepts.",
    # Policy: contact limits (§7.6, docs/POLICY.md)
    "under_minimum_age": "You're below the minimum age this relay's policy allows.",
    "age_change_requires_assurance": (
        "Moving to an older age band needs an age check; ask an administrator."
    ),
    "contact_not_allowed": "Adults can't start conversations with accounts under 18.",
    "sender_restricted": "This account can't start new contact with people under 18.",
    "rate_limited": "You've sent too many new contact requests today. Try again tomorrow.",
    "you_blocked": "You blocked this account. Unblock them first.",
    "already_connected": "You're already connected.",
    "request_pending": "Your request is waiting for their answer.",
    "request_declined": "They declined your request.",
    "request_awaiting_you": "They asked to connect with you: accept their request first.",
    "no_pending_request": "There is no request from them to answer.",
    "cannot_target_self": "That's your own account.",
    # Guardian links (§6.7, docs/POLICY.md "Guardians")
    "guardian_links_off": "This relay's policy doesn't allow guardian links.",
    "guardian_pair_invalid": (
        "A guardian link is between an adult (the guardian) and someone under 18."
    ),
    "already_linked": "You're already linked.",
    "guardian_invite_pending": "Your invitation is waiting for their answer.",
    "guardian_invite_awaiting_you": "They invited you: accept their invitation instead.",
    "too_many_guardians": "That account under 18 already has as many guardians as allowed.",
    "no_pending_invite": "There is no invitation from them to accept.",
    "not_linked": "You aren't linked with them, and no invitation is waiting.",
    "no_pending_approval": "No contact of your ward is waiting for your approval there.",
    "guardian_approval_pending": (
        "This contact is waiting for a guardian's approval: nobody can write yet."
    ),
    # Key directory (§6.3)
    "no_prekeys": "That account hasn't published its encryption keys yet.",
    # End-to-end encrypted messages (§6.4)
    "report_item_foreign": ("A reported message must be between you and the account you report."),
    "franking_invalid": (
        "A reported encrypted message could not be verified: its text, franking key or "
        "relay tag doesn't match."
    ),
    # Moderation (§6.5)
    "forbidden": (
        "Not allowed: your role doesn't cover this, or the case is about you, about someone "
        "of your standing or above, or one you reported."
    ),
    "case_closed": "That case is closed; only reinstate is still possible.",
    "nothing_to_lift": "The account is neither suspended nor restricted by a moderator.",
    "not_reportable": (
        "Nothing in this case is reportable to the CyberTipline: no minor is involved and "
        "there is no known-material match."
    ),
    "unknown_case": "There is no case with that number.",
    "unknown_queue": "There is no review queue with that name.",
    "queue_empty": "No case is waiting in that queue.",
    "replayed_request": "That request id was already used on this connection.",
    "account_suspended": "This account is suspended.",
    # Abuse limits (docs/POLICY.md "Limits")
    "registration_limited": "Too many accounts were registered from your network. Try later.",
    "search_limited": "You're searching too fast. Wait a minute and try again.",
    "bundle_limited": "You're looking up keys too fast. Wait a minute and try again.",
    "quota_exceeded": (
        "Too much is already waiting for them at the relay: try again once they have "
        "caught up."
    ),
    # Groups (PROTOCOL.md §6.8)
    "unknown_group": "There is no such group, or you aren't in it.",
    "not_group_member": "Accept the invitation to this group first.",
    "not_group_admin": "Only the group's admins can do that.",
    "already_member": "They are already in this group, or invited.",
    "group_full": "This group has as many members as the relay's policy allows.",
    "group_encrypted": (
        "This group is end-to-end encrypted; this relay's policy doesn't let someone under 18 "
        "join it."
    ),
    "group_members_changed": (
        "The group's members changed: encrypt the message for the members it has now."
    ),
    # Anything else
    "not_found": "There is nothing at that address.",
    "internal_error": "The relay hit an unexpected error; nothing was stored.",
}


def wire_message(code: str) -> str:
    """The sentence for a wire code (unknown codes get a generic sentence, never a KeyError)."""
    return WIRE_ERRORS.get(code, "The request was refused.")
