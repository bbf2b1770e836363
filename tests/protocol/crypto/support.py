"""Deterministic keys and randomness for the crypto tests, and a two-party harness."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass

from protocol.crypto.keys import IdentityKeyPair, X25519KeyPair
from protocol.crypto.ratchet import Session
from protocol.crypto.x3dh import PrekeyBundle, initiate, respond, sign_prekey


def deterministic_random(label: bytes) -> Callable[[int], bytes]:
    """An injected ``random``: SHA-256(label ‖ counter) blocks, so every run is identical."""
    counter = itertools.count()

    def random(n: int) -> bytes:
        out = b""
        while len(out) < n:
            out += hashlib.sha256(label + next(counter).to_bytes(8, "big")).digest()
        return out[:n]

    return random


def seeded(label: bytes) -> bytes:
    return hashlib.sha256(b"agechat-test-seed/" + label).digest()


@dataclass
class Party:
    handle: str
    identity: IdentityKeyPair
    spk: X25519KeyPair
    opk: X25519KeyPair

    @classmethod
    def make(cls, handle: str) -> Party:
        return cls(
            handle,
            IdentityKeyPair.from_seed(seeded(handle.encode() + b"/ik")),
            X25519KeyPair.from_private(seeded(handle.encode() + b"/spk")),
            X25519KeyPair.from_private(seeded(handle.encode() + b"/opk")),
        )

    def bundle(self, *, with_opk: bool = True) -> PrekeyBundle:
        return PrekeyBundle(
            identity_key=self.identity.public,
            spk_id=7,
            spk_public=self.spk.public,
            spk_signature=sign_prekey(self.identity, self.spk.public),
            opk_id=42 if with_opk else None,
            opk_public=self.opk.public if with_opk else None,
        )


def establish(
    alice: Party | None = None, bob: Party | None = None, *, label: bytes = b"pair", mode="e2ee"
) -> tuple[Session, Session]:
    """X3DH (with a one-time prekey) and both ratchet sessions; Alice speaks first."""
    alice = alice or Party.make("alice")
    bob = bob or Party.make("bob")
    started = initiate(
        alice.identity, alice.handle, bob.handle, bob.bundle(), mode,
        random=deterministic_random(label + b"/x3dh"),
    )  # fmt: skip
    agreed = respond(bob.identity, bob.handle, alice.handle, started.header, bob.spk, bob.opk, mode)
    a = Session.initiator(
        started.agreement.shared_key, started.agreement.associated_data,
        started.peer_ratchet_key, random=deterministic_random(label + b"/alice"),
    )  # fmt: skip
    b = Session.responder(
        agreed.shared_key, agreed.associated_data, bob.spk,
        random=deterministic_random(label + b"/bob"),
    )  # fmt: skip
    return a, b
