"""Frozen known-answer vectors for X3DH and the first Double Ratchet messages.

Every input is deterministic: identity seeds, prekeys and the injected ``random`` come
from SHA-256 of fixed labels (``tests/protocol/crypto/support.py``). The hex below was
produced once by this module's ``compute()`` (run ``python -m
tests.protocol.crypto.test_known_answers`` to print it) and frozen; any change to a KDF,
an info string, the AD or header layout, or the AEAD breaks this test on purpose. If a
change is intended, bump the relevant version label and regenerate.
"""

from __future__ import annotations

from protocol.crypto.ratchet import Session
from protocol.crypto.x3dh import initiate, respond
from tests.protocol.crypto.support import Party, deterministic_random


def compute() -> dict[str, str]:
    alice, bob = Party.make("alice"), Party.make("bob")
    bundle = bob.bundle()
    started = initiate(
        alice.identity, "alice", "bob", bundle, "e2ee", random=deterministic_random(b"kat/x3dh")
    )
    agreed = respond(bob.identity, "bob", "alice", started.header, bob.spk, bob.opk, "e2ee")
    assert agreed == started.agreement
    a = Session.initiator(
        started.agreement.shared_key,
        started.agreement.associated_data,
        started.peer_ratchet_key,
        random=deterministic_random(b"kat/alice"),
    )
    b = Session.responder(
        agreed.shared_key, agreed.associated_data, bob.spk, random=deterministic_random(b"kat/bob")
    )
    m1 = a.encrypt(b"hello bob")
    assert b.decrypt(m1) == b"hello bob"
    m2 = b.encrypt(b"hello alice")
    assert a.decrypt(m2) == b"hello alice"
    m3 = a.encrypt(b"after one DH step")
    assert b.decrypt(m3) == b"after one DH step"
    return {
        "alice_identity": alice.identity.public.hex(),
        "bob_identity": bob.identity.public.hex(),
        "bob_spk_signature": bundle.spk_signature.hex(),
        "ephemeral_key": started.header.ephemeral_key.hex(),
        "shared_key": started.agreement.shared_key.hex(),
        "associated_data": started.agreement.associated_data.hex(),
        "alice_message_1": m1.hex(),
        "bob_message_1": m2.hex(),
        "alice_message_2": m3.hex(),
    }


FROZEN: dict[str, str] = {
    "alice_identity": "eccbd0fed6371325bdce9006404f57d72d0dc79a2e6cfea1d0eff5905020f988",
    "bob_identity": "e37e14b3227b64875a8196015821f254e77db51588f71e690491d00abf2511d0",
    "bob_spk_signature": (
        "b06957e7d7058edb933b86472ae37c3e1e86e4cba224cc343d5edf5e0d921bb3"
        "ad2e94acd4a3cb8a088054b1dffb612297598161dae37a66da0db47b1f932701"
    ),
    "ephemeral_key": "f3e4017082042cbf3bdb7b16e29f278df5100cd53c52812dfd4ca9ae5fc9d764",
    "shared_key": "d5b7f10d97c74a9515455aaf5477e9265129deccdfafb7efd36c16f3c7be880d",
    "associated_data": (
        "0020eccbd0fed6371325bdce9006404f57d72d0dc79a2e6cfea1d0eff5905020"
        "f9880020e37e14b3227b64875a8196015821f254e77db51588f71e690491d00a"
        "bf2511d00012616765636861742f783364682d61642f76310005616c69636500"
        "03626f62000465326565"
    ),
    "alice_message_1": (
        "01e332f6f814c85c3464b3365ef1317572289455031930b195653434f0915824"
        "6a00000000000000001878f73e076219ad49611edfed99fca91fe019cb1d4361"
        "0d24acd88398ee7a09f999ffb5fe1408990dee42d62b3bad1d3b"
    ),
    "bob_message_1": (
        "01672e78eb3454c36516f1d3be27880ca1c7cf147ae8508722cc031a30922367"
        "1800000000000000006ce1d36fa7f2cab980feb2a7ff376165c97e4e36ff9280"
        "cf38080ffeafe534abd07a5aaf05f2b01b689cc906c6f5802dcd11be"
    ),
    "alice_message_2": (
        "019cfd0c9e25dcc4fbb28668ba5f64fd85ec0321d11471573411b56ce5588a99"
        "170000000100000000b0f57c4f8ccb2af06035648bc4507f256d9f89b03e4e4a"
        "b0560ef78528172e70e4ec505315264b3dcef6c747fe0cfc98d5d9cc9f402d06"
        "4a39"
    ),
}


def test_known_answers():
    assert compute() == FROZEN


if __name__ == "__main__":
    for name, value in compute().items():
        chunks = "\n".join(f'        "{value[i : i + 64]}"' for i in range(0, len(value), 64))
        print(f'    "{name}": (\n{chunks}\n    ),')
