"""Plain words for what protects a person and why — shared by the TUI and the CLI.

Written so a 13-year-old can follow them, and honest about what each mode protects.
"""

from __future__ import annotations

from protocol.policy import Band, is_minor

# 👀 rather than 👁: terminals disagree on 👁's width, which shifts every line it is on.
MODE_BADGE = {
    "e2ee": "🔒 end-to-end encrypted",
    "visible": "👀 visible to safety checks",
}

BAND_WORDS = {
    "under_13": "under 13",
    "teen_13_15": "13 to 15",
    "teen_16_17": "16 or 17",
    "adult": "18 or over",
}


def mode_reason(mode: str, me: Band, peer_is_minor: bool | None) -> str:
    """One line for a conversation's header: why this chat has the mode it has."""
    if mode == "e2ee":
        return "Only you and they can read this chat — not even agechat's relay."
    if is_minor(me):
        return "Not end-to-end encrypted, because you're under 18: safety checks can see it."
    if peer_is_minor:
        return "Not end-to-end encrypted, because they're under 18: safety checks can see it."
    return "Not end-to-end encrypted: someone in this chat is under 18."


def protections(band: Band) -> list[str]:
    """What applies to someone in this band, shown before they create their account."""
    if is_minor(band):
        lines = [
            "Your chats are not end-to-end encrypted, so that safety systems can check them.",
            "Adults you haven't connected with can't message you, and can't find you in search.",
            "Other young people you don't know can only send you a request: you decide.",
            "You can block or report anyone, any time. People you block aren't told.",
            "To change your birth date to an older age, an administrator has to check it.",
        ]
    else:
        lines = [
            "Your chats with other adults are end-to-end encrypted: only you and they can "
            "read them.",
            "Chats that include someone under 18 are not end-to-end encrypted, so safety "
            "systems can check them.",
            "You can't start a conversation with someone under 18 or find them in search; "
            "they can ask to connect with you.",
            "You can block or report anyone, any time.",
        ]
    return lines


NOTICE_TITLES = {
    "new_adult_contact": "New adult contact",
    "contact_restricted": "Safety notice",
    "message_request": "Message request from someone you don't know",
    "contact_request": "Contact request",
    "guardian_invite": "Someone asks to be your guardian",
}
#: Grooming-risk notices (``risk_<rule>``, docs/SIGNALS.md): the rule's own words say what
#: happened; the title says what to do.
RISK_NOTICE_TITLE = "Be careful with this person"


def notice_title(code: str) -> str:
    if code.startswith("risk_"):
        return RISK_NOTICE_TITLE
    return NOTICE_TITLES.get(code, "Notice")
