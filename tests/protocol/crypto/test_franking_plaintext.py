"""The franked plaintext's MessagePack rules as docs/PROTOCOL.md §6.4.5 states them.

The reference client writes ``{"text", "franking_key"}`` in that order in the shortest
forms; a recipient accepts any key order and length encoding and treats anything but
exactly that map as undecryptable.
"""

from __future__ import annotations

import msgspec
import pytest

from protocol.crypto import CryptoError, frank, unfrank
from protocol.crypto.franking import commitment

FK = bytes(range(32))


def _map(*items: bytes, header: bytes = b"\x82") -> bytes:
    return header + b"".join(items)


TEXT_KEY = b"\xa4text"
FK_KEY = b"\xacfranking_key"
FK_BIN8 = b"\xc4\x20" + FK


def _unfrank(plaintext: bytes, text: str = "hi") -> str:
    return unfrank(plaintext, commitment(FK, text, "e2ee"), "e2ee").text


def test_the_reference_encoding_is_text_first_in_shortest_forms():
    franked = frank("hi", "e2ee", random=lambda n: FK[:n])
    assert franked.plaintext == _map(TEXT_KEY, b"\xa2hi", FK_KEY, FK_BIN8)
    long_text = "x" * 40  # past fixstr: str 8
    franked = frank(long_text, "e2ee", random=lambda n: FK[:n])
    assert franked.plaintext.startswith(_map(TEXT_KEY, b"\xd9\x28" + b"x" * 40))


@pytest.mark.parametrize(
    "plaintext",
    [
        _map(FK_KEY, FK_BIN8, TEXT_KEY, b"\xa2hi"),  # the other key order
        _map(TEXT_KEY, b"\xd9\x02hi", FK_KEY, FK_BIN8),  # str 8 for a short text
        _map(TEXT_KEY, b"\xdb\x00\x00\x00\x02hi", FK_KEY, FK_BIN8),  # str 32
        _map(TEXT_KEY, b"\xa2hi", FK_KEY, b"\xc5\x00\x20" + FK),  # bin 16
        _map(TEXT_KEY, b"\xa2hi", FK_KEY, FK_BIN8, header=b"\xde\x00\x02"),  # map 16
    ],
)
def test_any_key_order_and_length_encoding_is_accepted(plaintext):
    assert _unfrank(plaintext) == "hi"


@pytest.mark.parametrize(
    "plaintext",
    [
        _map(TEXT_KEY, b"\xa2hi", FK_KEY, FK_BIN8, b"\xa1x\x01", header=b"\x83"),  # another key
        _map(TEXT_KEY, b"\xa2hi", header=b"\x81"),  # franking_key missing
        _map(TEXT_KEY, b"\xa2hi", FK_KEY, b"\xd9\x20" + b"k" * 32),  # a str, not a bin
        _map(TEXT_KEY, b"\xa2hi", FK_KEY, b"\xc4\x1f" + FK[:31]),  # 31 bytes
        _map(TEXT_KEY, b"\xa2hi", FK_KEY, FK_BIN8) + b"\x00",  # bytes after the map
        msgspec.msgpack.encode(["hi", FK]),  # an array, not a map
    ],
)
def test_anything_but_exactly_that_map_is_refused(plaintext):
    with pytest.raises(CryptoError):
        _unfrank(plaintext)


def test_text_that_is_not_utf8_is_refused_as_undecryptable():
    """A validly encrypted message whose text isn't UTF-8 is undecryptable (CryptoError), not
    an exception that ends the recipient's connection on every redelivery."""
    with pytest.raises(CryptoError):
        _unfrank(_map(TEXT_KEY, b"\xa2\xff\xfe", FK_KEY, FK_BIN8))
