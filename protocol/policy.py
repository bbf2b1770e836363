"""Age bands and conversation modes: the pure policy functions both sides share.

Bands are derived from the birth date and a ``today`` that the caller passes in; they are
never stored, so a minor becomes an adult on their 18th birthday with nobody doing anything
(DESIGN.md "Accounts, ages and identity"). The contact rules arrive with issue #3.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Literal

Band = Literal["under_13", "teen_13_15", "teen_16_17", "adult"]
BANDS: tuple[Band, ...] = ("under_13", "teen_13_15", "teen_16_17", "adult")
ConversationMode = Literal["visible", "e2ee"]


def age_on(birthdate: date, today: date) -> int:
    """Whole years completed on ``today`` (a 29 February birthday counts on 1 March)."""
    years = today.year - birthdate.year
    if (today.month, today.day) < (birthdate.month, birthdate.day):
        years -= 1
    return years


def band(birthdate: date, today: date) -> Band:
    """The age band of someone born on ``birthdate``, as of ``today``."""
    age = age_on(birthdate, today)
    if age < 13:
        return "under_13"
    if age < 16:
        return "teen_13_15"
    if age < 18:
        return "teen_16_17"
    return "adult"


def is_minor(b: Band) -> bool:
    """Every band but ``adult`` is a minor."""
    return b != "adult"


def conversation_mode(member_bands: Iterable[Band]) -> ConversationMode:
    """``e2ee`` only when every member is an adult; otherwise ``visible``.

    The walking skeleton has no E2EE yet (issue #4), so callers in the relay still
    use ``visible`` for every conversation; this function is what #3/#4 switch to.
    """
    return "e2ee" if all(b == "adult" for b in member_bands) else "visible"
