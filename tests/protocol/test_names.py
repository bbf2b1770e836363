"""Display names that impersonate the service or hide characters are refused (issue 9,
defect 11), in disguise too; ordinary names in any script, with emoji, are not."""

from __future__ import annotations

import pytest

from protocol.names import display_name_problem

REFUSED = {
    "agechat": "reserved_display_name",
    "AgeChat": "reserved_display_name",
    "AGECHAT Support": "reserved_display_name",
    "age chat": "reserved_display_name",
    "Admin": "reserved_display_name",
    "ADMIN": "reserved_display_name",
    "the admins": "reserved_display_name",
    "AdminBob": "reserved_display_name",
    "Moderator": "reserved_display_name",
    "mod­erator": "invalid_display_name",  # a soft hyphen hides in it
    "Safety Team": "reserved_display_name",
    "safety-team": "reserved_display_name",
    "Trust & Safety": "reserved_display_name",
    "ＡＤＭＩＮ": "reserved_display_name",  # full-width
    "аdmin": "reserved_display_name",  # Cyrillic а
    "4dm1n": "reserved_display_name",
    "Sam\u202eevil": "invalid_display_name",  # right-to-left override
    "Sam\u2066x\u2069": "invalid_display_name",  # bidi isolates
    "Sam\u200bSmith": "invalid_display_name",  # zero-width space
    "Sam\ufeff": "invalid_display_name",
    "\u200d": "invalid_display_name",
    "Z\u0301\u0302\u0303\u0304\u0305algo": "invalid_display_name",
    "Ádmin": "reserved_display_name",
    "Modèrator": "reserved_display_name",
    "Age ĉhat": "reserved_display_name",
    "admın": "reserved_display_name",  # dotless i
    "ɑdmin": "reserved_display_name",  # Latin alpha
    "A d m i n": "reserved_display_name",
    "A g e c h a t": "reserved_display_name",
    "Ad\u034fmin": "invalid_display_name",  # combining grapheme joiner
    "\u3164": "invalid_display_name",  # Hangul filler
    "\u2800": "invalid_display_name",  # braille blank
    "Sam\ufe0fSmith": "invalid_display_name",  # a variation selector on a letter
    "   ": "invalid_display_name",
    " Sam": "invalid_display_name",
}
FINE = [
    "Sam",
    "Maya Lopez",
    "Badminton Bea",
    "Page Chatterton",
    "Mirage Chat Club",
    "Ada Minor",
    "Modesty Blaise",
    "Zoë",
    "Łukasz",
    "山田太郎",
    "محمد",
    "Dev 👩\u200d💻",
    "Rex 🦖",
    "José\u0301",
    "Sam\u3000Smith",  # ideographic space
    "山田\u3000太郎",
    "Ana\u00a0Lima",  # no-break space
    "محمد\u200cرضا",  # Persian, zero-width non-joiner
    "ශ්\u200dරී",  # Sinhala conjunct with a zero-width joiner
    "Fiona 🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland
    "Kai 1\ufe0f\u20e3",  # keycap
    "Age Chatterjee",
    "Trusty Sam",
]


@pytest.mark.parametrize(("name", "code"), REFUSED.items(), ids=[repr(n) for n in REFUSED])
def test_refused(name, code):
    problem = display_name_problem(name)
    assert problem is not None and problem[0] == code


@pytest.mark.parametrize("name", FINE)
def test_fine(name):
    assert display_name_problem(name) is None
