"""Display names (and handles) a person can trust: no impersonating the service or its
staff, nothing hidden.

A display name is shown beside every message and notice, so a name that reads "agechat" or
"Safety Team" could pass a stranger off as the service talking, and bidirectional-control or
invisible characters can make a name read differently from what it is (a "Trojan Source"
trick, CVE-2021-42574). Pure: the relay applies it at registration, a client may before.

Ordinary names in any script must pass: joiners between letters (Persian ZWNJ, Sinhala and
Indic conjuncts), emoji sequences (👩‍💻, subdivision flags), spaces of any width.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

#: Words that, as a whole word of the name, claim to speak for the service.
RESERVED_WORDS: Final = frozenset(
    {"admin", "admins", "administrator", "administrators", "moderator", "moderators", "sysop"}
)
#: A word that starts or ends with one of these claims it too ("AdminBob", "bob_moderator");
#: inside a word it doesn't ("Badminton").
_AFFIXES: Final = ("admin", "moderator", "sysop")
#: Letter runs that claim it once spaces and punctuation between words are gone.
RESERVED_RUNS: Final = ("agechat", "safetyteam", "trustandsafety", "trustsafety")

# Look-alikes folded to Latin before the check. NFKD folds full-width forms, ligatures and
# accents (which are then dropped); these are other scripts' letters and digit spellings.
_LOOKALIKES: Final = str.maketrans(
    {
        "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
        "ѕ": "s", "ԁ": "d", "ј": "j", "ӏ": "l", "м": "m", "т": "t", "н": "h", "к": "k",
        "α": "a", "ε": "e", "ο": "o", "ι": "i", "κ": "k", "ν": "v", "τ": "t", "μ": "m",
        "ı": "i", "ɑ": "a", "ɡ": "g", "ʀ": "r", "ᴅ": "d", "ᴍ": "m", "ɪ": "i", "ɴ": "n",
        "0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
    }
)  # fmt: skip

_ZWNJ, _ZWJ = "\u200c", "\u200d"
_TAGS = range(0xE0020, 0xE0080)  # emoji tag sequences (subdivision flags)
#: Never allowed: format characters other than the joiners and tags above (bidi controls,
#: zero-width spaces, soft hyphen, U+FEFF), line and paragraph separators, private use,
#: surrogates, unassigned code points, control characters.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cf", "Zl", "Zp", "Co", "Cs", "Cn", "Cc"})
#: Characters in ordinary categories that show nothing: Hangul fillers, the combining
#: grapheme joiner, the braille blank, Mongolian variation selectors.
_BLANKS: Final = frozenset("\u3164\u115f\u1160\uffa0\u034f\u2800\u180b\u180c\u180d\u180f")
_VARIATION_SELECTORS = range(0xFE00, 0xFE10)
#: More combining marks than this on one character is "Zalgo" text that spills over lines.
MAX_COMBINING_MARKS: Final = 3


def _emoji(ch: str) -> bool:
    return unicodedata.category(ch) in ("So", "Sk") or ord(ch) in _VARIATION_SELECTORS


def _letter(ch: str) -> bool:
    return unicodedata.category(ch)[0] in ("L", "M")


def _hidden_at(name: str, i: int) -> bool:
    ch = name[i]
    before = name[i - 1] if i > 0 else ""
    after = name[i + 1] if i + 1 < len(name) else ""
    if ch in (_ZWNJ, _ZWJ):
        # Between letters (conjuncts, Persian) or, for ZWJ, between emoji (👩‍💻).
        if before and after and _letter(before) and _letter(after):
            return False
        return not (ch == _ZWJ and before and after and _emoji(before) and _emoji(after))
    if ord(ch) in _TAGS:
        return not before or not (_emoji(before) or ord(before) in _TAGS)
    if ord(ch) in _VARIATION_SELECTORS:
        return not before or (not _emoji(before) and unicodedata.category(before) != "Nd")
    if ch in _BLANKS:
        return True
    return unicodedata.category(ch) in _FORBIDDEN_CATEGORIES


def hidden_character(name: str) -> str | None:
    """The first character that hides or reorders text, as U+XXXX, or None."""
    run = 0
    for i, ch in enumerate(name):
        if _hidden_at(name, i):
            return f"U+{ord(ch):04X}"
        marks = unicodedata.category(ch) in ("Mn", "Me") and ord(ch) not in _VARIATION_SELECTORS
        run = run + 1 if marks else 0
        if run > MAX_COMBINING_MARKS:
            return f"U+{ord(ch):04X}"
    return None


def _words(name: str) -> list[str]:
    """Latin letter words after folding accents, width and look-alikes; single letters in
    a row ("A d m i n") joined back into one word."""
    decomposed = unicodedata.normalize("NFKD", name)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = bare.casefold().translate(_LOOKALIKES)
    words: list[str] = []
    for word in re.findall(r"[a-z]+", folded):
        if len(word) == 1 and words and words[-1].endswith("\0"):
            words[-1] = words[-1][:-1] + word + "\0"
        else:
            words.append(word + ("\0" if len(word) == 1 else ""))
    return [w.rstrip("\0") for w in words]


def impersonates_staff(name: str) -> bool:
    """Does the name (or handle) claim to be the service or its staff, in any case or
    disguise?"""
    words = _words(name)
    if RESERVED_WORDS.intersection(words):
        return True
    if any(w.startswith(r) or w.endswith(r) for w in words for r in _AFFIXES):
        return True
    for i in range(len(words)):
        # Inside one word, at its start or end ("AgeChatHelp", "BobAgechat").
        if any(words[i].startswith(r) or words[i].endswith(r) for r in RESERVED_RUNS):
            return True
        # Up to four neighbouring words that spell it exactly ("Safety Team",
        # "Trust & Safety"; not "Age Chatterjee").
        for j in range(i + 2, min(len(words), i + 4) + 1):
            if "".join(words[i:j]) in RESERVED_RUNS:
                return True
    return False


def display_name_problem(name: str) -> tuple[str, str] | None:
    """(code, detail) for a display name the relay refuses, or None when it is fine."""
    if name != name.strip():
        return "invalid_display_name", "no spaces at the start or end"
    if (hidden := hidden_character(name)) is not None:
        return "invalid_display_name", f"{hidden} hides or reorders text"
    if not any(unicodedata.category(c)[0] in "LNSP" for c in name):
        return "invalid_display_name", "a display name needs a visible character"
    if impersonates_staff(name):
        return "reserved_display_name", "it reads as agechat or its staff"
    return None
