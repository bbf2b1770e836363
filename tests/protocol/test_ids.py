"""Time-ordered message ids (protocol/ids.py): the message-id syntax, the time first, and
the reference client's ids in the order it made them."""

from __future__ import annotations

import re

import pytest

from client.relay.outbox import new_message_id
from protocol.ids import RANDOM_BYTES, time_ordered_id

ID_SYNTAX = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")  # PROTOCOL.md §1


def test_an_id_has_the_message_id_syntax_and_26_characters():
    made = time_ordered_id(1_795_000_000_000, bytes(range(RANDOM_BYTES)))
    assert ID_SYNTAX.match(made) and len(made) == 26


def test_ids_sort_by_time_whatever_their_random_part():
    early = time_ordered_id(1_795_000_000_000, b"\xff" * RANDOM_BYTES)
    later = time_ordered_id(1_795_000_000_001, b"\x00" * RANDOM_BYTES)
    much_later = time_ordered_id(2**48 - 1, b"\x00" * RANDOM_BYTES)
    assert early < later < much_later


def test_the_random_part_tells_ids_of_one_millisecond_apart():
    a = time_ordered_id(1_795_000_000_000, b"\x00" * 9 + b"\x01")
    b = time_ordered_id(1_795_000_000_000, b"\x00" * 9 + b"\x02")
    assert a != b and a[:8] == b[:8]  # 48 bits of time: the first eight characters


@pytest.mark.parametrize(
    ("millis", "random"),
    [(-1, b"\x00" * RANDOM_BYTES), (2**48, b"\x00" * RANDOM_BYTES), (0, b"\x00" * 9)],
)
def test_a_time_or_random_part_that_does_not_fit_is_refused(millis, random):
    with pytest.raises(ValueError):
        time_ordered_id(millis, random)


def test_the_clients_ids_are_distinct_and_in_the_order_made():
    made = [new_message_id() for _ in range(2000)]
    assert len(set(made)) == len(made)
    assert all(ID_SYNTAX.match(m) for m in made)
    # Within one millisecond the random part decides, so compare the time parts only.
    times = [m[:8] for m in made]
    assert times == sorted(times)
