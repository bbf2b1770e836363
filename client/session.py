"""ChatSession: everything an interactive front end needs, on top of RelayClient.

The TUI is given one of these (or a way to make one at onboarding) and never touches
sockets, keys or storage itself (ARCHITECTURE.md; harlequin passes its adapter in the
same way).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import aiohttp
import msgspec

from client.account import create_account
from client.e2ee import SafetyNumber
from client.errors import ClientError
from client.events import ClientEvent
from client.history import History, HistoryMessage
from client.keystore import INTERACTIVE, KdfLimits
from client.profile import Profile
from client.relay import RelayClient
from client.timeutil import utc_now
from protocol.frames import ContactEntry, Person, conversation_id
from protocol.group_frames import AddOutcome, GroupView
from protocol.groups import group_conversation, group_of
from protocol.policy import Band, Policy, band

#: The name shown for a group this device has messages from but no list entry for.
UNKNOWN_GROUP_NAME = "Group chat"


@dataclass(frozen=True, slots=True)
class Conversation:
    """One entry in the conversation list.

    ``handle`` is its key: the other person's handle, or for a group its conversation id
    ``grp:<group id>`` (a handle never has a colon, so the two can't collide).
    """

    handle: str
    display_name: str
    #: One-to-one: connected | incoming_request | outgoing_request | declined | ... | stranger.
    #: A group: member | invited (an invitation to answer) | left (no longer in it).
    state: str
    mode: str
    restricted: bool
    unread: int
    last: HistoryMessage | None
    verified: bool = False  # the safety number was compared and marked verified
    key_changed: bool = False  # their key changed since: a sticky warning
    #: A group as the relay last listed it (None for a one-to-one chat, or a group this
    #: device knows only from its history).
    group: GroupView | None = None

    @property
    def is_group(self) -> bool:
        return group_of(self.handle) is not None

    @property
    def group_id(self) -> str | None:
        return group_of(self.handle)

    @property
    def is_request(self) -> bool:
        """A contact request, or an invitation to a group: Accept or Decline."""
        return self.state == "incoming_request" or (self.is_group and self.state == "invited")


class ChatSession:
    def __init__(self, profile: Profile, history: History, client: RelayClient) -> None:
        self.profile = profile
        self.history = history
        self.client = client
        self._contacts: list[ContactEntry] = []
        self._policy: Policy | None = None
        self._names: dict[str, str] = {}  # display names search showed, by handle
        self._groups_listed = False  # the relay listed our groups during this session

    # --- opening -----------------------------------------------------------------------

    @classmethod
    async def open(cls, directory: Path, passphrase: str) -> ChatSession:
        profile = Profile.load(directory)
        identity = profile.unlock(passphrase)
        history = History(profile.history_path)
        await history.open()
        client = RelayClient(profile, identity, history, reconnect=True)
        await client.start()
        return cls(profile, history, client)

    @classmethod
    async def create(
        cls,
        directory: Path,
        *,
        server: str,
        handle: str,
        display_name: str,
        birthdate: date,
        passphrase: str,
        kdf: KdfLimits = INTERACTIVE,
    ) -> ChatSession:
        await create_account(
            directory,
            server=server,
            handle=handle,
            display_name=display_name,
            birthdate=birthdate,
            passphrase=passphrase,
            kdf=kdf,
        )
        return await cls.open(directory, passphrase)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()
        await self.history.close()

    # --- who am I ----------------------------------------------------------------------

    @property
    def handle(self) -> str:
        return self.profile.handle

    @property
    def display_name(self) -> str:
        return self.profile.data.display_name

    @property
    def band(self) -> Band:
        return band(self.profile.data.birthdate, utc_now().date())

    @property
    def connected(self) -> bool:
        return self.client.is_connected

    def events(self) -> AsyncIterator[ClientEvent]:
        return self.client.events()

    async def policy(self) -> Policy | None:
        """The relay's policy (cached); None when the relay can't be reached."""
        if self._policy is None:
            try:
                timeout = aiohttp.ClientTimeout(total=5)
                url = f"{self.profile.server}/v1/policy"
                async with aiohttp.ClientSession(timeout=timeout) as s, s.get(url) as response:
                    raw = await response.read()
                self._policy = msgspec.json.decode(raw, type=Policy)
            except (aiohttp.ClientError, OSError, TimeoutError, msgspec.DecodeError):
                return None
        return self._policy

    # --- conversations -----------------------------------------------------------------

    async def refresh_contacts(self) -> None:
        """Ask the relay for contacts, requests and groups (kept for when it is
        unreachable: contacts for this session, groups in the local history)."""
        with contextlib.suppress(ClientError):
            self._contacts = await self.client.contacts()
        await self.refresh_groups()

    async def refresh_groups(self) -> bool:
        """Ask the relay for your groups and invitations and keep them; False when it
        couldn't be asked (the last list stays)."""
        if not self.client.is_connected:
            return False  # don't wait for a connection: the list kept is shown meanwhile
        try:
            views = await self.client.groups.list()
        except ClientError:
            return False
        await self.history.save_groups(views, utc_now())
        self._groups_listed = True
        for view in views:
            self._names.update((m.handle, m.display_name) for m in view.members)
        return True

    async def group_view(self, group: str) -> GroupView | None:
        """One of your groups as the relay last listed it (None: not among them now)."""
        cached = (await self.history.saved_groups()).get(group)
        return cached.view if cached is not None and cached.current else None

    async def conversations(self) -> list[Conversation]:
        summaries = {s.peer: s for s in await self.history.conversation_summaries(self.handle)}
        keys = await self.client.e2ee.store.all_peers()
        result: dict[str, Conversation] = {}

        def flags(handle: str) -> tuple[bool, bool]:
            record = keys.get(handle)
            return (record.verified, record.key_changed) if record else (False, False)

        for c in self._contacts:
            s = summaries.get(c.handle)
            result[c.handle] = Conversation(
                c.handle,
                c.display_name,
                c.state,
                c.mode or (s.last.mode if s else "visible"),
                c.restricted,
                s.unread if s else 0,
                s.last if s else None,
                *flags(c.handle),
            )
        gone: set[str] = set()
        for gid, cached in (await self.history.saved_groups()).items():
            key = group_conversation(gid)
            s = summaries.get(key)
            view = cached.view
            if not cached.current and (s is None or view.state == "invited"):
                gone.add(key)  # left with nothing kept here, or an invitation declined
                continue
            state = view.state if cached.current else "left"
            result[key] = Conversation(
                key,
                view.name,
                state,
                view.mode,
                False,
                s.unread if s else 0,
                s.last if s else None,
                group=view,
            )
        for peer, s in summaries.items():
            if peer in result or peer in gone or peer == "agechat":
                continue
            if s.is_group:  # in our history, never in a list the relay gave this device
                state = "left" if self._groups_listed else "member"
                result[peer] = Conversation(
                    peer, UNKNOWN_GROUP_NAME, state, s.last.mode, False, s.unread, s.last
                )
                continue
            result[peer] = Conversation(
                peer,
                self._names.get(peer, peer),  # not a contact: as search showed them
                "stranger",
                s.last.mode,
                False,
                s.unread,
                s.last,
                *flags(peer),
            )

        def order(c: Conversation) -> tuple[int, float, str]:
            when = c.last.created_at.timestamp() if c.last else 0.0
            return (0 if c.is_request else 1, -when, c.handle)

        return sorted(result.values(), key=order)

    def _conversation(self, key: str) -> str:
        """The conversation id of a list key (a handle, or a group's conversation id)."""
        return key if group_of(key) is not None else conversation_id(self.handle, key)

    async def messages(
        self,
        handle: str,
        *,
        limit: int = 200,
        before_rowid: int | None = None,
        after_rowid: int | None = None,
    ) -> list[HistoryMessage]:
        return await self.history.conversation(
            self._conversation(handle),
            limit=limit,
            before_rowid=before_rowid,
            after_rowid=after_rowid,
        )

    async def mark_read(self, handle: str) -> None:
        await self.history.mark_conversation_seen(self._conversation(handle))

    async def send(self, handle: str, text: str) -> HistoryMessage:
        """To a person, or to everyone in a group (``handle`` = ``grp:<id>``)."""
        if (group := group_of(handle)) is not None:
            return await self.client.send_group(group, text)
        return await self.client.send(handle, text)

    # --- groups (PROTOCOL.md §6.8) ------------------------------------------------------

    async def create_group(
        self, name: str, members: list[str]
    ) -> tuple[GroupView, list[AddOutcome]]:
        """A group with you as admin; each member joins, is invited or is refused."""
        result = await self.client.groups.create(name, members)
        await self.refresh_groups()
        return result

    async def add_to_group(self, group: str, handle: str) -> tuple[GroupView, AddOutcome]:
        result = await self.client.groups.add(group, handle)
        await self.refresh_groups()
        return result

    async def remove_from_group(self, group: str, handle: str) -> str:
        outcome = await self.client.groups.remove(group, handle)
        await self.refresh_groups()
        return outcome

    async def leave_group(self, group: str) -> str:
        outcome = await self.client.groups.leave(group)
        await self.refresh_groups()
        return outcome

    # --- contacts and safety -----------------------------------------------------------

    async def search(self, query: str) -> list[Person]:
        people = await self.client.search(query)
        self._names.update((p.handle, p.display_name) for p in people)
        return people

    def display_name_of(self, handle: str) -> str:
        """Their display name as the relay last gave it (contacts, then search); the
        handle when we were never told."""
        for c in self._contacts:
            if c.handle == handle:
                return c.display_name
        return self._names.get(handle, handle)

    async def request(self, handle: str) -> str:
        outcome = await self.client.contact_request(handle)
        await self.refresh_contacts()
        return outcome

    async def respond(self, handle: str, accept: bool) -> str:
        """Answer a contact request — or, for a group (``grp:<id>``), its invitation."""
        if (group := group_of(handle)) is not None:
            outcome = await self.client.groups.respond(group, accept)
            await self.refresh_groups()
            return outcome
        outcome = await self.client.respond(handle, accept)
        await self.refresh_contacts()
        return outcome

    async def block(self, handle: str) -> str:
        outcome = await self.client.block(handle)
        await self.refresh_contacts()
        return outcome

    async def unblock(self, handle: str) -> str:
        outcome = await self.client.unblock(handle)
        await self.refresh_contacts()
        return outcome

    async def report_preview(
        self, handle: str, last: int = 5, group: str | None = None
    ) -> list[HistoryMessage]:
        """The messages a report would attach, to show before sending it: the last of our
        conversation, or with ``group`` the last ``handle`` sent in that group (the same
        choice ``RelayClient.report`` makes)."""
        if group is None:
            return await self.history.last_messages(conversation_id(self.handle, handle), last)
        recent = await self.history.last_messages(group_conversation(group), 500)
        return [m for m in recent if m.sender == handle and m.kind == "message"][-last:]

    async def report(
        self, handle: str, reason: str, last: int = 5, group: str | None = None
    ) -> list[HistoryMessage]:
        return await self.client.report(handle, reason, last, group=group)

    # --- end-to-end encryption: safety numbers ------------------------------------------

    async def safety_number(self, handle: str) -> SafetyNumber:
        return await self.client.safety_number(handle)

    async def verify(self, handle: str, expected: str | None = None) -> SafetyNumber:
        return await self.client.verify(handle, expected)

    async def accept_key(self, handle: str) -> SafetyNumber:
        return await self.client.accept_key(handle)

    def now(self) -> datetime:
        return utc_now()


class ProfileSessions:
    """Opens (or, at onboarding, creates) the ChatSession for one profile directory."""

    def __init__(self, directory: Path, kdf: KdfLimits = INTERACTIVE) -> None:
        self.directory = directory
        self.kdf = kdf

    @property
    def has_account(self) -> bool:
        return Profile.exists(self.directory)

    async def open(self, passphrase: str) -> ChatSession:
        return await ChatSession.open(self.directory, passphrase)

    async def create(
        self, *, server: str, handle: str, display_name: str, birthdate: date, passphrase: str
    ) -> ChatSession:
        return await ChatSession.create(
            self.directory,
            server=server,
            handle=handle,
            display_name=display_name,
            birthdate=birthdate,
            passphrase=passphrase,
            kdf=self.kdf,
        )
