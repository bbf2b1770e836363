"""The relay's policy application, seen from the people it affects (issue 17).

Each test here was checked against a hand-applied mutant of `server/social/` that every
other test let through:

- a blocked person's view (their contact list, their search, the answers to what they
  send) must not show the block (POLICY.md "Block": "The blocked account gets exactly the
  answer it would have got without the block"), and other people's lists must not show it
  either: weakening the blocker check in ``list_contacts`` showed every block to everyone;
- a self-service re-declaration applies in memory at once — the band, the conversation's
  mode, search, what the pair may do, stale requests — and is announced, without waiting
  for the minute's band check or a restart: deleting the in-memory update in
  ``change_birthdate``, or the band check after it, went unnoticed;
- the daily cap on new contacts counts message requests (a stranger's first message), not
  only contact requests, through the relay.

Raw frames over a real relay (tests/server/raw.py): nothing sends behind the test's back.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime

import aiohttp
import pytest

from protocol.codec import decode_relay_frame, encode_frame
from protocol.e2ee import MIN_RATCHET_MESSAGE, Envelope, encode_body
from protocol.frames import (
    Accepted,
    Block,
    Bundle,
    ContactEntry,
    ContactRequest,
    ContactRespond,
    ContactsList,
    ContactsResult,
    Deliver,
    Done,
    Error,
    FetchBundle,
    Search,
    SearchResult,
    Send,
    SetBirthdate,
)
from protocol.identity import declaration_message
from protocol.policy import band
from protocol.registration import AgeDeclaration
from tests.server.raw import Person, connect, new_id, receive
from tests.support import Relay, years_ago

ADULT, ADULT2 = years_ago(40), years_ago(35)
TEEN14, TEEN15 = years_ago(14), years_ago(15, days=40)


#: Deliveries that arrived while a test waited for an answer, per socket: kept, so that
#: a check for what someone received sees them (tests/server/raw.py's `answer` skips them).
_INBOX: dict[int, list[Deliver]] = defaultdict(list)


@pytest.fixture(autouse=True)
def _empty_inbox():
    _INBOX.clear()
    yield
    _INBOX.clear()


async def ask(ws, frame) -> object:
    """Send a frame with a `rid` (a `send`: an `id`) and return the frame answering it,
    whatever its type, keeping the deliveries that come first."""
    ref = getattr(frame, "rid", None) or frame.id
    await ws.send_str(encode_frame(frame))
    while True:
        f = await receive(ws)
        if (
            getattr(f, "rid", None) == ref
            or (isinstance(f, Accepted) and f.id == ref)
            or (isinstance(f, Error) and f.ref == ref)
        ):
            return f
        if isinstance(f, Deliver):
            _INBOX[id(ws)].append(f)


async def quiet(ws, seconds: float = 0.4) -> list[Deliver]:
    """Every delivery kept for this socket, and those arriving within ``seconds``."""
    got, _INBOX[id(ws)] = _INBOX[id(ws)], []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            msg = await asyncio.wait_for(ws.receive(), left)
        except TimeoutError:
            break
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        if isinstance(f := decode_relay_frame(msg.data), Deliver):
            got.append(f)
    return got


async def expect(ws, *codes: str | None) -> list[Deliver]:
    """Wait for exactly these deliveries (event codes; None for a message), in any order,
    so that a later check for silence isn't fooled by one that came late."""
    got, _INBOX[id(ws)] = _INBOX[id(ws)], []
    while len(got) < len(codes):
        f = await receive(ws)
        if isinstance(f, Deliver):
            got.append(f)
    assert sorted(str(d.code) for d in got) == sorted(str(c) for c in codes), got
    return got


async def contacts(ws) -> list[ContactEntry]:
    result = await ask(ws, ContactsList(rid=new_id()))
    assert isinstance(result, ContactsResult)
    return result.contacts


async def search(ws, query: str) -> list[str]:
    result = await ask(ws, Search(rid=new_id(), query=query))
    assert isinstance(result, SearchResult)
    return [p.handle for p in result.results]


#: An e2ee body of the right shape: the relay checks the shape, never the content.
SEALED = encode_body(Envelope(bytes(MIN_RATCHET_MESSAGE)))


async def send(ws, to: str, text: str, mode: str = "visible") -> object:
    if mode == "e2ee":
        frame = Send(id=new_id(), to=to, mode=mode, body=SEALED, commitment=bytes(32))
    else:
        frame = Send(id=new_id(), to=to, mode=mode, body=text)
    return await ask(ws, frame)


async def contact_request(ws, to: str) -> object:
    return await ask(ws, ContactRequest(rid=new_id(), to=to))


async def respond(ws, handle: str, accept: bool = True) -> object:
    return await ask(ws, ContactRespond(rid=new_id(), handle=handle, accept=accept))


async def fetch_bundle(ws, handle: str) -> object:
    return await ask(ws, FetchBundle(rid=new_id(), handle=handle, one_time_prekey=False))


def outcome(frame: object) -> tuple[str, object]:
    """What an answer tells its receiver, without ids and times."""
    if isinstance(frame, Error):
        return ("error", frame.code)
    if isinstance(frame, Done):
        return ("done", frame.outcome)
    if isinstance(frame, Accepted):
        return ("accepted", (frame.conversation, frame.request))
    if isinstance(frame, Bundle):
        return ("bundle", (frame.handle, frame.mode))
    raise AssertionError(f"unexpected answer {frame!r}")


async def connected(ws_a, a: str, ws_b, b: str) -> None:
    """``a`` asks ``b``, who accepts."""
    assert outcome(await contact_request(ws_a, b)) == ("done", "requested")
    assert outcome(await respond(ws_b, a)) == ("done", "connected")


# --- a blocked person's view ---------------------------------------------------------------


async def view(ws, blocker: str) -> dict[str, object]:
    """Everything the blocked person can ask that could show the block (but sending)."""
    return {
        "contacts": await contacts(ws),
        "request": outcome(await contact_request(ws, blocker)),
        "bundle": outcome(await fetch_bundle(ws, blocker)),
    }


async def test_a_contact_who_is_blocked_sees_the_same_list_and_answers(relay: Relay):
    tia = await Person("tia", TEEN14).register(relay)
    tom = await Person("tom", TEEN15).register(relay)
    una = await Person("una", TEEN15).register(relay)
    async with connect(relay, tia) as t, connect(relay, tom) as o, connect(relay, una) as u:
        await connected(o, "tom", t, "tia")
        await connected(u, "una", t, "tia")
        await expect(
            t, "contact_request", "contact_accepted", "contact_request", "contact_accepted"
        )
        await expect(o, "contact_accepted")
        await expect(u, "contact_accepted")
        before, una_before = await view(o, "tia"), await contacts(u)
        assert [(c.handle, c.state, c.mode) for c in before["contacts"]] == [
            ("tia", "connected", "visible")
        ]
        assert before["request"] == ("error", "already_connected")
        assert before["bundle"] == ("bundle", ("tia", "visible"))
        first = await send(o, "tia", "before")
        assert outcome(first) == ("accepted", ("dm:tia:tom", False))
        (arrived,) = await expect(t, None)
        assert (arrived.sender, arrived.body) == ("tom", "before")

        assert outcome(await ask(t, Block(rid=new_id(), handle="tom"))) == ("done", "blocked")

        assert await view(o, "tia") == before
        assert outcome(await send(o, "tia", "after")) == outcome(first)
        assert (await quiet(t)) == []  # nothing reaches the blocker...
        assert (await quiet(o)) == []  # ...and nothing tells the blocked
        # Nobody else's list shows it; only the blocker's own does.
        assert await contacts(u) == una_before
        assert [(c.handle, c.state, c.mode) for c in await contacts(t)] == [
            ("tom", "blocked", None),
            ("una", "connected", "visible"),
        ]


async def test_search_after_a_block(relay: Relay):
    """POLICY.md: the blocker "disappears from their search" (the blocked person's); the
    blocker still finds them, and a third person's search is untouched."""
    tia = await Person("tia", TEEN14).register(relay)
    tom = await Person("tom", TEEN15).register(relay)
    una = await Person("una", TEEN15).register(relay)
    async with connect(relay, tia) as t, connect(relay, tom) as o, connect(relay, una) as u:
        assert await search(o, "ti") == ["tia"]
        assert await search(u, "t") == ["tia", "tom"]
        assert outcome(await ask(t, Block(rid=new_id(), handle="tom"))) == ("done", "blocked")
        assert await search(o, "ti") == []
        assert await search(o, "tia") == []  # exact handle too
        assert await search(o, "Tia") == []  # display name too
        assert await search(t, "tom") == ["tom"]
        assert await search(u, "t") == ["tia", "tom"]


async def test_a_stranger_who_is_blocked_gets_a_strangers_answers(relay: Relay):
    """A first message and a contact request from someone blocked before any contact are
    answered as they would be without the block (a request), and dropped."""
    tia = await Person("tia", TEEN14).register(relay)
    val = await Person("val", TEEN15).register(relay)
    async with connect(relay, tia) as t, connect(relay, val) as v:
        assert outcome(await ask(t, Block(rid=new_id(), handle="val"))) == ("done", "blocked")
        assert outcome(await send(v, "tia", "hi")) == ("accepted", ("dm:tia:val", True))
        # The first message made a (silent) request, as it would for anyone: a contact
        # request now is the one already pending.
        assert outcome(await contact_request(v, "tia")) == ("error", "request_pending")
        assert outcome(await fetch_bundle(v, "tia")) == ("bundle", ("tia", "visible"))
        assert (await quiet(t)) == []
        assert (await quiet(v)) == []


async def test_a_blocked_strangers_request_looks_pending_like_any_other(relay: Relay):
    tia = await Person("tia", TEEN14).register(relay)
    uma = await Person("uma", TEEN15).register(relay)  # not blocked: the comparison
    val = await Person("val", TEEN15).register(relay)  # blocked
    async with connect(relay, tia) as t, connect(relay, uma) as m, connect(relay, val) as v:
        assert outcome(await ask(t, Block(rid=new_id(), handle="val"))) == ("done", "blocked")
        for ws in (m, v):
            assert outcome(await contact_request(ws, "tia")) == ("done", "requested")
        assert outcome(await contact_request(m, "tia")) == ("error", "request_pending")
        assert [(c.handle, c.state) for c in await contacts(m)] == [("tia", "outgoing_request")]
        # The blocked stranger must see the same.
        assert [(c.handle, c.state) for c in await contacts(v)] == [("tia", "outgoing_request")]
        assert outcome(await contact_request(v, "tia")) == ("error", "request_pending")


# --- self-service re-declaration applies at once ------------------------------------------


def declaration(person: Person, born) -> AgeDeclaration:
    at = datetime.now(UTC).replace(microsecond=0)
    declared = band(born, at.date())
    signed = declaration_message(person.handle, declared, person.identity_key, at)
    return AgeDeclaration(
        handle=person.handle,
        band=declared,
        identity_key=person.identity_key,
        declared_at=at,
        signature=person.sign(signed),
    )


async def test_a_redeclaration_applies_in_memory_at_once(relay: Relay):
    """An adult who re-declares as 15 is a minor for every decision that follows, with no
    restart and no wait for the minute's band check."""
    ann = await Person("ann", ADULT).register(relay)
    bob = await Person("bob", ADULT2).register(relay)
    cyd = await Person("cyd", ADULT2).register(relay)  # a stranger with a pending request
    dee = await Person("dee", ADULT2).register(relay)  # a stranger
    async with (
        connect(relay, ann) as a,
        connect(relay, bob) as b,
        connect(relay, cyd) as c,
        connect(relay, dee) as d,
    ):
        await connected(b, "bob", a, "ann")
        assert outcome(await contact_request(c, "ann")) == ("done", "requested")
        await expect(a, "contact_request", "contact_accepted", "contact_request")
        await expect(b, "contact_accepted")
        # As adults: an e2ee chat, so plaintext is refused; strangers find ann.
        assert [(x.handle, x.state, x.mode) for x in await contacts(a)] == [
            ("bob", "connected", "e2ee"),
            ("cyd", "incoming_request", "e2ee"),
        ]
        assert outcome(await send(b, "ann", "plain")) == ("error", "mode_mismatch")
        assert await search(d, "ann") == ["ann"]

        fifteen = years_ago(15, days=10)
        changed = SetBirthdate(
            rid=new_id(), birthdate=fifteen, declaration=declaration(ann, fifteen)
        )
        assert outcome(await ask(a, changed)) == ("done", "birthdate_changed")

        # Announced now (the minute's band check hasn't run: the relay just started).
        # (Waiting up to 5 s: the periodic check is 60 s away.)
        (event,) = await expect(a, "band_changed")
        assert (event.kind, event.sender) == ("system", "agechat")
        assert "from adult to teen_13_15" in event.body
        assert "visible to safety checks" in event.body
        (to_bob,) = await expect(b, "band_changed")
        assert to_bob.conversation == "dm:ann:bob"
        assert "teen_13_15" not in to_bob.body  # contacts aren't told the band
        assert (await quiet(a)) == []  # once

        # The conversation is visible from both ends, and plaintext goes through.
        assert [(x.handle, x.state, x.mode) for x in await contacts(a)] == [
            ("bob", "connected", "visible")
        ]  # cyd's request was cancelled: adults can't start contact with minors
        assert [(x.handle, x.mode) for x in await contacts(b)] == [("ann", "visible")]
        assert await contacts(c) == []
        bundle = await fetch_bundle(b, "ann")
        assert outcome(bundle) == ("bundle", ("ann", "visible"))
        assert bundle.declaration.band == "teen_13_15"  # the new declaration, stored
        assert outcome(await send(b, "ann", "plain now")) == ("accepted", ("dm:ann:bob", False))
        # Adult strangers can neither find nor reach her.
        assert await search(d, "ann") == []
        assert outcome(await send(d, "ann", "hi")) == ("error", "contact_not_allowed")
        assert outcome(await contact_request(d, "ann")) == ("error", "contact_not_allowed")


async def test_an_older_redeclaration_is_refused_and_changes_nothing(relay: Relay):
    teen = await Person("tia", TEEN14).register(relay)
    adult = await Person("bob", ADULT).register(relay)
    async with connect(relay, teen) as t, connect(relay, adult) as b:
        older = years_ago(30)
        changed = SetBirthdate(rid=new_id(), birthdate=older, declaration=declaration(teen, older))
        assert outcome(await ask(t, changed)) == ("error", "age_change_requires_assurance")
        assert (await quiet(t)) == []
        assert await search(b, "tia") == []  # still a minor to adults


# --- the daily cap counts message requests, through the relay --------------------------


@pytest.fixture
async def capped_relay(tmp_path):
    """`default` with a daily cap of 2 new contacts, 1 of them to minors."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "policies" / "default.toml").read_text()
    text = text.replace("contact_requests_per_day = 20", "contact_requests_per_day = 2")
    text = text.replace(
        "contact_requests_to_minors_per_day = 5", "contact_requests_to_minors_per_day = 1"
    )
    path = tmp_path / "capped.toml"
    path.write_text(text)
    relay = await Relay(tmp_path / "relay", policy=str(path)).start()
    yield relay
    await relay.stop()


async def test_first_messages_to_strangers_count_against_the_daily_cap(capped_relay: Relay):
    relay = capped_relay
    tia = await Person("tia", TEEN14).register(relay)
    names = ("una", "val", "wes")
    for name in names:
        await Person(name, TEEN15).register(relay)
    ada = await Person("ada", ADULT).register(relay)
    for name in ("bea", "cal", "dan"):
        await Person(name, ADULT2).register(relay)
    async with connect(relay, tia) as t, connect(relay, ada) as a:
        # A minor's first message to a minor uses the to-minors cap (1)...
        assert outcome(await send(t, "una", "hi")) == ("accepted", ("dm:tia:una", True))
        assert outcome(await send(t, "val", "hi")) == ("error", "rate_limited")
        assert outcome(await contact_request(t, "wes")) == ("error", "rate_limited")
        # ...but not contact with adults, up to the overall cap (2).
        assert outcome(await send(t, "bea", "hi")) == ("accepted", ("dm:bea:tia", True))
        assert outcome(await send(t, "cal", "hi")) == ("error", "rate_limited")
        # A message riding on a pending request is no new contact.
        assert outcome(await send(t, "una", "again")) == ("accepted", ("dm:tia:una", True))
        # An adult: message requests and contact requests share the overall cap.
        assert outcome(await send(a, "bea", "", "e2ee")) == ("accepted", ("dm:ada:bea", True))
        assert outcome(await contact_request(a, "cal")) == ("done", "requested")
        assert outcome(await send(a, "dan", "", "e2ee")) == ("error", "rate_limited")
        assert outcome(await contact_request(a, "dan")) == ("error", "rate_limited")
