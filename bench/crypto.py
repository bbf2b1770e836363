"""End-to-end encryption cost per message and per session (issue #4).

Not a test: it prints per-operation medians and the ratio of a symmetric-ratchet
send+receive (one message encrypted by Alice and decrypted by Bob, same chain) to the
60 µs target. Beside it, for scale, the raw PyNaCl/stdlib primitives the ratchet is made
of, a send+receive that includes a DH ratchet step (the direction alternates every
message), and a whole X3DH session setup (both sides, with a one-time prekey).

    python bench/crypto.py [--rounds 7] [--messages 2000]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nacl
import nacl.bindings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from protocol.crypto.keys import IdentityKeyPair, X25519KeyPair  # noqa: E402
from protocol.crypto.ratchet import Session  # noqa: E402
from protocol.crypto.x3dh import PrekeyBundle, initiate, respond, sign_prekey  # noqa: E402

TARGET_US = 60.0
PLAINTEXT = os.urandom(100)


def per_op_us(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean time of ``n`` calls, in microseconds."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(samples)


def fresh_pair() -> tuple[Session, Session, IdentityKeyPair, IdentityKeyPair, PrekeyBundle]:
    alice, bob = IdentityKeyPair.generate(), IdentityKeyPair.generate()
    spk, opk = X25519KeyPair.generate(), X25519KeyPair.generate()
    bundle = PrekeyBundle(bob.public, 1, spk.public, sign_prekey(bob, spk.public), 2, opk.public)
    started = initiate(alice, "alice", "bob", bundle, "e2ee")
    agreed = respond(bob, "bob", "alice", started.header, spk, opk, "e2ee")
    a = Session.initiator(agreed.shared_key, agreed.associated_data, spk.public)
    b = Session.responder(agreed.shared_key, agreed.associated_data, spk)
    b.decrypt(a.encrypt(b"hello"))
    return a, b, alice, bob, bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    rounds, n = args.rounds, args.messages

    key, nonce, ad = os.urandom(32), os.urandom(24), os.urandom(120)
    x_priv, x_pub = os.urandom(32), X25519KeyPair.generate().public
    primitives = {
        "X25519 (one scalar multiplication)": lambda: nacl.bindings.crypto_scalarmult(
            x_priv, x_pub
        ),
        "XChaCha20-Poly1305 encrypt, 100 B": lambda: (
            nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(PLAINTEXT, ad, nonce, key)
        ),
        "HMAC-SHA256 (one, stdlib hmac.digest)": lambda: hmac.digest(key, b"\x01", hashlib.sha256),
    }

    a, b, *_ = fresh_pair()

    def symmetric() -> None:
        b.decrypt(a.encrypt(PLAINTEXT))

    c, d, *_ = fresh_pair()
    turn = [0]

    def with_dh_step() -> None:
        # Alternating directions: every receive performs a DH ratchet step (2 X25519 +
        # one key generation + 2 HKDF) on the receiver.
        if turn[0] % 2:
            d.decrypt(c.encrypt(PLAINTEXT))
        else:
            c.decrypt(d.encrypt(PLAINTEXT))
        turn[0] += 1

    _, _, alice, bob, _ = fresh_pair()
    spk, opk = X25519KeyPair.generate(), X25519KeyPair.generate()
    bundle = PrekeyBundle(bob.public, 1, spk.public, sign_prekey(bob, spk.public), 2, opk.public)

    def setup() -> None:
        started = initiate(alice, "alice", "bob", bundle, "e2ee")
        agreed = respond(bob, "bob", "alice", started.header, spk, opk, "e2ee")
        Session.initiator(agreed.shared_key, agreed.associated_data, spk.public)
        Session.responder(agreed.shared_key, agreed.associated_data, spk)

    print(
        f"agechat crypto bench: CPython {platform.python_version()}, PyNaCl {nacl.__version__},"
        f" {platform.machine()}, {os.cpu_count()} CPUs; median of {rounds} rounds"
    )
    print("\nraw primitives (for scale)")
    for name, fn in primitives.items():
        print(f"  {name:<44} {per_op_us(fn, n, rounds):8.2f} µs")
    sym = per_op_us(symmetric, n, rounds)
    dh = per_op_us(with_dh_step, max(n // 4, 1), rounds)
    x3dh_us = per_op_us(setup, max(n // 20, 1), rounds)
    print("\nagechat (100-byte plaintext)")
    print(f"  {'send+receive, symmetric ratchet':<44} {sym:8.2f} µs")
    print(f"  {'send+receive, with a DH ratchet step':<44} {dh:8.2f} µs")
    print(f"  {'session setup (X3DH both sides + ratchets)':<44} {x3dh_us:8.2f} µs")
    print(f"\nratio symmetric send+receive / {TARGET_US:.0f} µs target = {sym / TARGET_US:.2f}")


if __name__ == "__main__":
    main()
