"""Display names a person can trust: no impersonating the system or its staff, nothing hidden.

A display name is shown beside every message and notice, so a name that reads "agechat" or
"Safety Team" could pass a stranger off as the service talking, and bidirectional-control or
invisible characters can make a name read differently from what it is (a "Trojan Source"
trick, CVE-2021-42574). Pure: the relay applies it at registration, a client may before.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

#: Words that, as a whole word of the name, claim to speak for the service.
RESERVED_WORDS: Final = frozenset(
    {"admin", "admins", "administrator", "administrators", "moderator", "moderators", "sysop"}
)
_AFFIXES: Final = ("admin", "moderator", "sysop")
#: Letter runs that claim it once spaces and punctuation between words are gone.
RESERVED_RUNS: Final = ("agechat", "safetyteam", "trustandsafety", "trustsafety")

# Look-alikes folded to Latin before the check (NFKC folds full-width forms and ligatures,
# not Cyrillic or Greek letters or digit spellings).
_LOOKALIKES: Final = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
        "ѕ": "s", "ԁ": "d", "ј": "j", "ӏ": "l", "м": "m", "т": "t", "н": "h", "к": "k",
        "α": "a", "ε": "e", "ο": "o", "ι": "i", "κ": "k", "ν": "v", "τ": "t", "μ": "m",
        "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
    }
)  # fmt: skip

_ZWJ: Final = "\u200d"
#: Unicode categories never allowed: format characters (bidi controls, zero-width spaces
#: and joiners, soft hyphen), line and paragraph separators, private use, surrogates,
#: unassigned code points, and control characters.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cf", "Zl", "Zp", "Co", "Cs", "Cn", "Cc"})
#: More combining marks than this on one character is "Zalgo" text that spills over lines.
MAX_COMBINING_MARKS: Final = 3


def _emoji_side(ch: str) -> bool:
    return unicodedata.category(ch) in ("So", "Sk") or ch == "\ufe0f"


def hidden_character(name: str) -> str | None:
    """The first character that hides or reorders text, as U+XXXX, or None."""
    run = 0
    for i, ch in enumerate(name):
        category = unicodedata.category(ch)
        if ch == _ZWJ:
            # Allowed only inside an emoji sequence (👩‍💻), where it is what joins them.
            if 0 < i < len(name) - 1 and _emoji_side(name[i - 1]) and _emoji_side(name[i + 1]):
                continue
            return f"U+{ord(ch):04X}"
        if category in _FORBIDDEN_CATEGORIES or (category == "Zs" and ch != " "):
            return f"U+{ord(ch):04X}"
        run = run + 1 if category in ("Mn", "Me") and ch != "\ufe0f" else 0
        if run > MAX_COMBINING_MARKS:
            return f"U+{ord(ch):04X}"
    return None


def impersonates_staff(name: str) -> bool:
    """Does the name claim to be the service or its staff, in any case or disguise?"""
    folded = unicodedata.normalize("NFKC", name).casefold().translate(_LOOKALIKES)
    words = re.findall(r"[a-z]+", folded)
    if RESERVED_WORDS.intersection(words):
        return True
    # Run together with a name ("AdminBob", "bob_moderator"), not inside a word ("Badminton").
    if any(w.startswith(r) or w.endswith(r) for w in words for r in _AFFIXES):
        return True
    # Up to four neighbouring words run together ("Safety Team", "Trust & Safety"), at a
    # word boundary ("Page Chatterton" is not "age chat").
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + 4) + 1):
            run = "".join(words[i:j])
            one_word = j == i + 1  # inside one word it may end there too ("BobAgechat")
            if any(run.startswith(r) or (one_word and run.endswith(r)) for r in RESERVED_RUNS):
                return True
    return False


def display_name_problem(name: str) -> tuple[str, str] | None:
    """(code, detail) for a display name the relay refuses, or None when it is fine."""
    if not name.strip():
        return "invalid_display_name", "a display name needs a visible character"
    if name != name.strip():
        return "invalid_display_name", "no spaces at the start or end"
    if (hidden := hidden_character(name)) is not None:
        return "invalid_display_name", f"{hidden} hides or reorders text"
    if impersonates_staff(name):
        return "reserved_display_name", "it reads as agechat or its staff"
    return None
