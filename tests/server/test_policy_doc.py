"""docs/POLICY.md's preset table is what the presets do, and every reason code is listed."""

from protocol.errors import WIRE_ERRORS
from server.policy.doc import DOC, render


def test_policy_md_table_matches_the_presets():
    text = DOC.read_text()
    assert render(text) == text, "run `python -m server.policy.doc` to regenerate the table"


def test_every_policy_refusal_code_is_in_policy_md():
    text = DOC.read_text()
    policy_codes = [
        "contact_not_allowed",
        "sender_restricted",
        "rate_limited",
        "you_blocked",
        "already_connected",
        "request_pending",
        "request_declined",
        "request_awaiting_you",
        "no_pending_request",
        "under_minimum_age",
        "age_change_requires_assurance",
        "cannot_target_self",
    ]
    for code in policy_codes:
        assert code in WIRE_ERRORS
        assert f"`{code}`" in text
