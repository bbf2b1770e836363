from datetime import date

import pytest

from protocol.policy import band, conversation_mode


@pytest.mark.parametrize(
    ("born", "today", "expected"),
    [
        (date(2010, 5, 10), date(2023, 5, 9), "under_13"),
        (date(2010, 5, 10), date(2023, 5, 10), "teen_13_15"),  # 13th birthday
        (date(2010, 5, 10), date(2026, 5, 9), "teen_13_15"),
        (date(2010, 5, 10), date(2026, 5, 10), "teen_16_17"),
        (date(2010, 5, 10), date(2028, 5, 9), "teen_16_17"),
        (date(2010, 5, 10), date(2028, 5, 10), "adult"),  # adult on the 18th birthday
        (date(2008, 2, 29), date(2026, 2, 28), "teen_16_17"),  # leap-day births: 1 March
        (date(2008, 2, 29), date(2026, 3, 1), "adult"),
    ],
)
def test_band_boundaries(born, today, expected):
    assert band(born, today) == expected


def test_mode_is_e2ee_only_when_every_member_is_adult():
    assert conversation_mode(["adult", "adult"]) == "e2ee"
    assert conversation_mode(["adult", "teen_16_17"]) == "visible"
    assert conversation_mode(["teen_13_15", "teen_13_15"]) == "visible"
