"""Display names that impersonate the service or hide characters are refused (issue 9,
defect 11); ordinary names in any script, with emoji, are not."""

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
    "Sam\u3000Smith": "invalid_display_name",  # ideographic space
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
]


@pytest.mark.parametrize(("name", "code"), REFUSED.items(), ids=[repr(n) for n in REFUSED])
def test_refused(name, code):
    problem = display_name_problem(name)
    assert problem is not None and problem[0] == code


@pytest.mark.parametrize("name", FINE)
def test_fine(name):
    assert display_name_problem(name) is None
