"""Franking on the relay (issue #4, PROTOCOL.md §6.4): the payload's shape matches its mode,
e2ee deliveries carry the relay's tag, reports of e2ee messages are verified, the secret
survives a restart, and bundles say the conversation's mode (no one-time prekey when it is
visible). Raw frames against a real relay; each test that depends on it sets the E2EE
switch itself, so the tests hold whichever way protocol.policy ships it.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import pytest_asyncio

from protocol import policy as shared_policy
from protocol.codec import encode_frame
from protocol.crypto.franking import frank, relay_tag, timestamp_micros
from protocol.e2ee import MIN_RATCHET_MESSAGE, Envelope, encode_body
from protocol.frames import (
    Accepted,
    Auth,
    Bundle,
    ContactRequest,
    ContactRespond,
    Deliver,
    Done,
    Error,
    FetchBundle,
    OneTimePrekey,
    Report,
    ReportedMessage,
    Send,
    SignedPrekey,
    UploadPrekeys,
)
from protocol.identity import auth_message
from server.app_keys import FRANKING_SECRET, KEY_DIRECTORY, SOCIAL
from tests.server.raw import Person, answer, connect, new_id, receive, wait_for
from tests.support import TEEN, Relay

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def relay(tmp_path_factory) -> AsyncIterator[Relay]:
    running = await Relay(tmp_path_factory.mktemp("franking") / "relay").start()
    try:
        yield running
    finally:
        await running.stop()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def people(relay) -> dict[str, Person]:
    """ana and ben are connected adults; cat is an adult who publishes no keys; kid is 14."""
    people = {
        "ana": await Person("ana").register(relay),
        "ben": await Person("ben").register(relay),
        "cat": await Person("cat").register(relay),
        "kid": await Person("kid", TEEN).register(relay),
    }
    async with connect(relay, people["ana"]) as ws:
        rid = new_id()
        await ws.send_str(encode_frame(ContactRequest(rid=rid, to="ben")))
        assert isinstance(await answer(ws, rid), Done)
    async with connect(relay, people["ben"]) as ws:
        rid = new_id()
        await ws.send_str(encode_frame(ContactRespond(rid=rid, handle="ana", accept=True)))
        done = await answer(ws, rid)
        assert isinstance(done, Done) and done.outcome == "connected", done
    return people


@pytest.fixture
def e2ee_on(monkeypatch):
    """Adults' conversations are e2ee (as issue #4 ships), whatever the module's switch says."""
    monkeypatch.setattr(shared_policy, "E2EE_AVAILABLE", True)


def envelope_body() -> str:
    """A body with the shape of an e2ee envelope (the relay can't tell it from a real one)."""
    return encode_body(Envelope(message=os.urandom(MIN_RATCHET_MESSAGE + 16)))


class Franked:
    """One e2ee message as its recipient has it: text, franking key and the deliver frame."""

    def __init__(self, text: str, franking_key: bytes, deliver: Deliver) -> None:
        self.text = text
        self.franking_key = franking_key
        self.deliver = deliver

    def reported(self, **changes: object) -> ReportedMessage:
        fields: dict[str, object] = {
            "id": self.deliver.id,
            "sender": self.deliver.sender,
            "to": self.deliver.to,
            "text": self.text,
            "sent_at": self.deliver.sent_at,
            "franking_key": self.franking_key,
            "commitment": self.deliver.commitment,
            "franking_tag": self.deliver.franking_tag,
        }
        fields.update(changes)
        return ReportedMessage(**fields)  # type: ignore[arg-type]


async def send_franked(relay: Relay, sender, recipient, *texts: str) -> list[Franked]:
    """``sender`` sends each text as an e2ee message; ``recipient`` receives them live."""
    got = []
    async with connect(relay, recipient) as rws, connect(relay, sender) as sws:
        for text in texts:
            fk = os.urandom(32)
            franked = frank(text, "e2ee", random=lambda n, fk=fk: fk)
            frame = Send(
                id=new_id(),
                to=recipient.handle,
                mode="e2ee",
                body=envelope_body(),
                commitment=franked.commitment,
            )
            await sws.send_str(encode_frame(frame))
            accepted = await answer(sws, frame.id)
            assert isinstance(accepted, Accepted), accepted
            deliver = await wait_for(
                rws, lambda f, i=frame.id: isinstance(f, Deliver) and f.id == i
            )
            assert deliver.sent_at == accepted.sent_at
            got.append(Franked(text, fk, deliver))
    return got


async def file_report(relay: Relay, reporter, handle: str, *messages: ReportedMessage) -> object:
    async with connect(relay, reporter) as ws:
        rid = new_id()
        frame = Report(rid=rid, handle=handle, reason="abuse", messages=list(messages))
        await ws.send_str(encode_frame(frame))
        return await answer(ws, rid)


async def reports(relay: Relay) -> list[dict[str, object]]:
    return await relay.app[SOCIAL].social.reports()


# --- the shape of a send matches its own mode -----------------------------------------------


SHAPES = {
    "visible with a commitment": dict(mode="visible", body="hi", commitment=b"\x01" * 32),
    "visible with an envelope": dict(mode="visible", body=None, commitment=None),
    "e2ee without a commitment": dict(mode="e2ee", body=None, commitment=None),
    "e2ee with a plain body": dict(mode="e2ee", body="hi", commitment=b"\x01" * 32),
}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("e2ee_available", [False, True])
async def test_a_payload_contradicting_its_own_mode_is_refused(
    relay, people, monkeypatch, shape, e2ee_available
):
    monkeypatch.setattr(shared_policy, "E2EE_AVAILABLE", e2ee_available)
    fields = dict(SHAPES[shape])
    fields["body"] = fields["body"] or envelope_body()
    async with connect(relay, people["ana"]) as ws:
        # Checked before anything about the recipient: even a handle that doesn't exist.
        for to in ("ben", "nobody_here"):
            frame = Send(id=new_id(), to=to, **fields)  # type: ignore[arg-type]
            await ws.send_str(encode_frame(frame))
            refusal = await answer(ws, frame.id)
            assert isinstance(refusal, Error)
            assert (refusal.code, refusal.ref) == ("mode_mismatch", frame.id)


async def test_a_well_shaped_payload_still_meets_the_conversation_mode(relay, people, e2ee_on):
    async with connect(relay, people["kid"]) as ws:  # a minor and an adult: visible
        frame = Send(
            id=new_id(), to="ana", mode="e2ee", body=envelope_body(), commitment=b"\x02" * 32
        )
        await ws.send_str(encode_frame(frame))
        refusal = await answer(ws, frame.id)
        assert isinstance(refusal, Error) and refusal.code == "mode_mismatch"


# --- deliveries ------------------------------------------------------------------------------


async def test_an_e2ee_delivery_carries_the_commitment_and_the_relay_tag(relay, people, e2ee_on):
    (message,) = await send_franked(relay, people["ana"], people["ben"], "meet at 6")
    deliver = message.deliver
    assert deliver.mode == "e2ee"
    assert (
        deliver.commitment
        == frank("meet at 6", "e2ee", random=lambda n: message.franking_key).commitment
    )
    secret = relay.app[FRANKING_SECRET]
    expected = relay_tag(
        secret, deliver.commitment, "ana", "ben", timestamp_micros(deliver.sent_at)
    )
    assert deliver.franking_tag == expected


async def test_a_visible_delivery_carries_neither(relay, people):
    async with connect(relay, people["ana"]) as aws, connect(relay, people["kid"]) as kws:
        frame = Send(id=new_id(), to="ana", mode="visible", body="hello")
        await kws.send_str(encode_frame(frame))
        assert isinstance(await answer(kws, frame.id), Accepted)
        deliver = await wait_for(aws, lambda f: isinstance(f, Deliver) and f.id == frame.id)
    assert deliver.mode == "visible"
    assert deliver.commitment is None and deliver.franking_tag is None


# --- reports -----------------------------------------------------------------------------


async def test_a_genuine_report_is_verified_and_recorded_as_verified(relay, people, e2ee_on):
    (message,) = await send_franked(relay, people["ana"], people["ben"], "send me a photo")
    unfranked = ReportedMessage(id=new_id(), sender="ana", to="ben", text="hi")
    done = await file_report(relay, people["ben"], "ana", message.reported(), unfranked)
    assert isinstance(done, Done) and done.outcome == "reported"
    latest = (await reports(relay))[-1]
    assert (latest["reporter"], latest["reported"]) == ("ben", "ana")
    assert latest["verified"] == [True, False]


async def test_a_report_without_franking_is_stored_unverified(relay, people):
    plain = ReportedMessage(id=new_id(), sender="kid", to="ana", text="hello")
    done = await file_report(relay, people["ana"], "kid", plain)
    assert isinstance(done, Done) and done.outcome == "reported"
    assert (await reports(relay))[-1]["verified"] == [False]


def _altered_text(first: Franked, second: Franked) -> ReportedMessage:
    return first.reported(text=first.text + "!")


def _swapped_key(first: Franked, second: Franked) -> ReportedMessage:
    return first.reported(franking_key=second.franking_key)


def _tag_of_another_message(first: Franked, second: Franked) -> ReportedMessage:
    return first.reported(franking_tag=second.deliver.franking_tag)


def _other_time(first: Franked, second: Franked) -> ReportedMessage:
    return first.reported(sent_at=first.deliver.sent_at + timedelta(microseconds=1))


def _no_time(first: Franked, second: Franked) -> ReportedMessage:
    return first.reported(sent_at=None)


def _partial(first: Franked, second: Franked) -> ReportedMessage:
    return first.reported(franking_tag=None)


def _before_the_epoch(first: Franked, second: Franked) -> ReportedMessage:
    return first.reported(sent_at=datetime(1960, 1, 1, tzinfo=UTC))


FORGERIES = {
    "altered text": _altered_text,
    "swapped franking key": _swapped_key,
    "tag from another message": _tag_of_another_message,
    "another time": _other_time,
    "no time": _no_time,
    "only two of the three fields": _partial,
    "a time before the epoch": _before_the_epoch,
}


@pytest.mark.parametrize("forgery", FORGERIES)
async def test_a_report_whose_franking_doesnt_verify_is_refused_whole(
    relay, people, e2ee_on, forgery
):
    first, second = await send_franked(relay, people["ana"], people["ben"], "one", "two")
    before = len(await reports(relay))
    forged = FORGERIES[forgery](first, second)
    # A genuine message beside it doesn't save the report: nothing is filed.
    refusal = await file_report(relay, people["ben"], "ana", second.reported(), forged)
    assert isinstance(refusal, Error) and refusal.code == "franking_invalid"
    assert len(await reports(relay)) == before


async def test_a_franked_message_must_have_been_received_by_the_reporter(relay, people, e2ee_on):
    (message,) = await send_franked(relay, people["ana"], people["ben"], "to ben only")
    # Genuine evidence, but ana is its sender, not its recipient; cat is a bystander.
    for reporter, reported in (("ana", "ben"), ("cat", "ana")):
        refusal = await file_report(relay, people[reporter], reported, message.reported())
        assert isinstance(refusal, Error) and refusal.code == "franking_invalid"


async def test_verified_evidence_cant_be_moved_onto_another_account(relay, people, e2ee_on):
    (message,) = await send_franked(relay, people["ana"], people["ben"], "from ana")
    # Genuine and received by ben, but from ana: it proves nothing about cat.
    refusal = await file_report(relay, people["ben"], "cat", message.reported())
    assert isinstance(refusal, Error) and refusal.code == "franking_invalid"


# --- the secret --------------------------------------------------------------------------


async def test_the_secret_survives_a_restart_and_is_never_logged(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(shared_policy, "E2EE_AVAILABLE", True)
    # The relay's own loggers, at every level. (aiosqlite's DEBUG logger prints SQL
    # parameters, bodies included; the relay runs at INFO, so it never emits them.)
    caplog.set_level(logging.DEBUG, logger="agechat")
    data_dir = tmp_path / "relay"
    first = await Relay(data_dir).start()
    try:
        ana = await Person("ana").register(first)
        ben = await Person("ben").register(first)
        (message,) = await send_franked(first, ana, ben, "remember me")
        secret = first.app[FRANKING_SECRET]
    finally:
        await first.stop()
    second = await Relay(data_dir).start()
    try:
        assert len(secret) == 32
        assert second.app[FRANKING_SECRET] == secret
        async with aiohttp.ClientSession() as session, session.ws_connect(second.ws_url) as ws:
            challenge = await receive(ws)
            signed = auth_message(challenge.relay_id, challenge.nonce, "ben")
            await ws.send_str(encode_frame(Auth(handle="ben", signature=ben.sign(signed))))
            again = await wait_for(
                ws, lambda f: isinstance(f, Deliver) and f.id == message.deliver.id
            )
        assert again.franking_tag == message.deliver.franking_tag  # unacknowledged: redelivered
        done = await file_report(second, ben, "ana", message.reported())
        assert isinstance(done, Done)
    finally:
        await second.stop()
    assert secret.hex() not in caplog.text


# --- bundles say the conversation's mode ---------------------------------------------------


async def upload(relay: Relay, profile, count: int) -> None:
    public = os.urandom(32)
    spk = SignedPrekey(id=1, public=public, signature=profile.sign(b"\x05" + public))
    start = secrets.randbelow(2**31)
    opks = [OneTimePrekey(id=start + i, public=os.urandom(32)) for i in range(count)]
    async with connect(relay, profile) as ws:
        rid = new_id()
        await ws.send_str(
            encode_frame(UploadPrekeys(rid=rid, signed_prekey=spk, one_time_prekeys=opks))
        )
        assert isinstance(await answer(ws, rid), Done)


async def fetch(relay: Relay, profile, handle: str) -> object:
    async with connect(relay, profile) as ws:
        rid = new_id()
        await ws.send_str(encode_frame(FetchBundle(rid=rid, handle=handle)))
        return await answer(ws, rid)


async def stock(relay: Relay, handle: str) -> int:
    return await relay.app[KEY_DIRECTORY].one_time_count(handle)


@pytest.mark.parametrize(("e2ee_available", "asker"), [(False, "ben"), (True, "kid")])
async def test_a_visible_bundle_hands_out_no_one_time_prekey(
    relay, people, monkeypatch, e2ee_available, asker
):
    monkeypatch.setattr(shared_policy, "E2EE_AVAILABLE", e2ee_available)
    await upload(relay, people["ana"], 3)
    before = await stock(relay, "ana")
    bundle = await fetch(relay, people[asker], "ana")
    assert isinstance(bundle, Bundle), bundle
    assert bundle.mode == "visible"
    assert bundle.one_time_prekey is None
    assert bundle.signed_prekey is not None
    assert bundle.declaration.handle == "ana"
    assert await stock(relay, "ana") == before


@pytest.mark.parametrize(("e2ee_available", "asker"), [(False, "ana"), (True, "kid")])
async def test_a_visible_bundle_needs_no_published_keys(
    relay, people, monkeypatch, e2ee_available, asker
):
    monkeypatch.setattr(shared_policy, "E2EE_AVAILABLE", e2ee_available)
    bundle = await fetch(relay, people[asker], "cat")
    assert isinstance(bundle, Bundle), bundle
    assert (bundle.mode, bundle.signed_prekey, bundle.one_time_prekey) == ("visible", None, None)
    assert bundle.identity_key == people["cat"].identity_key


async def test_an_e2ee_bundle_hands_out_one_one_time_prekey(relay, people, e2ee_on):
    await upload(relay, people["ana"], 2)
    before = await stock(relay, "ana")
    bundle = await fetch(relay, people["ben"], "ana")
    assert isinstance(bundle, Bundle), bundle
    assert bundle.mode == "e2ee"
    assert bundle.signed_prekey is not None and bundle.one_time_prekey is not None
    assert await stock(relay, "ana") == before - 1
    refusal = await fetch(relay, people["ben"], "cat")  # e2ee, and cat published nothing
    assert isinstance(refusal, Error) and refusal.code == "no_prekeys"
