"""Free-text fields a moderator reads: a report's `reason` and a decision's `note` refuse
control characters when decoded, so escape sequences never reach a moderator's terminal
through them; ordinary text in any script decodes unchanged."""

from __future__ import annotations

import msgspec
import pytest

from protocol.codec import FrameError, decode_client_frame, encode_frame
from protocol.frames import Report, ReportedMessage
from protocol.moderation import PLACEHOLDER_SIGNATURE, ModDecide, QueueName
from protocol.types import DisplayName, Handle, MessageId

RID = "report-req-1"


def report(reason: str) -> str:
    # Structs aren't validated when built, only when decoded: this is what a client could send.
    return encode_frame(Report(rid=RID, handle="vic", reason=reason))


def decide(note: str) -> str:
    return encode_frame(
        ModDecide(
            rid="decide-req-1",
            case_id=1,
            action="dismiss",
            note=note,
            signature=PLACEHOLDER_SIGNATURE,
        )
    )


def refusal(raw: str) -> FrameError:
    with pytest.raises(FrameError) as info:
        decode_client_frame(raw)
    return info.value


UNICODE_REASONS = [
    "he keeps messaging me 😡🙅‍♀️",
    "Très désagréable, il insiste à répétition — ça suffit",
    "הוא שולח לי הודעות מאיימות",  # Hebrew, right to left
    "يرسل لي رسائل مزعجة",  # Arabic, right to left
    "mixed: שלום and hello, 日本語のテキスト",
    "markup stays text: [bold red]x[/]",
    "\u00a0non-breaking\u00a0spaces and a tab-free line",  # U+00A0 is just past C1
]


@pytest.mark.parametrize("reason", UNICODE_REASONS)
def test_a_reason_in_any_script_decodes_unchanged(reason):
    frame = decode_client_frame(report(reason))
    assert isinstance(frame, Report) and frame.reason == reason


@pytest.mark.parametrize(
    "reason",
    [
        "\x1b[2J",  # ESC: erase the screen
        "look \x1b[31mred",
        "\x9b2J",  # C1 CSI, the one-byte form of ESC [
        "\x85next line",  # C1 NEL
        "bell\x07",
        "nul\x00byte",
        "del\x7f",
        "two\nlines",
        "trailing newline\n",  # Python's `$` would let this one through
        "carriage\rreturn",
        "a\ttab",
    ],
)
def test_a_reason_with_a_control_character_is_refused(reason):
    error = refusal(report(reason))
    assert error.code == "invalid_frame"
    assert error.ref == RID  # the refusal names the request, so the client can match it
    assert "$.reason" in (error.detail or "")


def test_the_reason_keeps_its_length_limits():
    assert decode_client_frame(report("x" * 200)).reason == "x" * 200
    assert refusal(report("x" * 201)).code == "invalid_frame"
    assert refusal(report("")).code == "invalid_frame"


def test_reported_message_text_is_not_restricted():
    # Evidence is what was sent, byte for byte; the console escapes it when it shows it.
    text = "\x1b[2J\x9b[bold red]x[/]\r\n"
    raw = encode_frame(
        Report(
            rid=RID,
            handle="vic",
            reason="abuse",
            messages=[ReportedMessage(id="message-id-1", sender="vic", to="tia", text=text)],
        )
    )
    frame = decode_client_frame(raw)
    assert isinstance(frame, Report) and frame.messages[0].text == text


@pytest.mark.parametrize(
    "note",
    ["", "grooming signs", "first line\nsecond line", "ends with a newline\n", "עברית 👍 é"],
)
def test_a_note_with_newlines_or_any_script_decodes(note):
    frame = decode_client_frame(decide(note))
    assert isinstance(frame, ModDecide) and frame.note == note


@pytest.mark.parametrize(
    "note",
    ["bell\x07", "\x1b[2J", "\x9b2J", "crlf\r\nline", "a\ttab", "del\x7f", "nul\x00"],
)
def test_a_note_with_another_control_character_is_refused(note):
    error = refusal(decide(note))
    assert error.code == "invalid_frame"
    assert error.ref == "decide-req-1"
    assert "$.note" in (error.detail or "")


def test_the_note_keeps_its_length_limit():
    assert decode_client_frame(decide("n" * 1000)).note == "n" * 1000
    assert refusal(decide("n" * 1001)).code == "invalid_frame"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (Handle, "alice\n"),
        (MessageId, "abcdefgh1234\n"),
        (DisplayName, "Vic\n"),
        (QueueName, "general\n"),
    ],
)
def test_a_trailing_newline_is_not_part_of_any_name(kind, value):
    """`$` in a Python regex also matches before a final newline: `alice\\n` must not pass
    for the handle `alice` (a look-alike account)."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(value), type=kind)
    assert msgspec.json.decode(msgspec.json.encode(value.rstrip()), type=kind) == value.rstrip()
