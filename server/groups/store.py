"""Groups on disk (the tables are schema v8 in server/delivery/store.py): each group and its
members, with the mode last announced to them (so a birthday that changes it is noticed
once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiosqlite

from protocol.groups import MemberState, Role
from protocol.policy import ConversationMode
from server.delivery.store import SqliteStore


@dataclass
class Member:
    handle: str
    role: Role
    state: MemberState
    added_by: str
    since: datetime
    #: An invitation to someone who blocked the inviter: the inviter sees it pending, the
    #: invitee never learns of it (like a request to someone who blocked you).
    hidden: bool = False


@dataclass
class Group:
    id: str
    name: str
    created_by: str
    created_at: datetime
    #: The mode last announced to the members.
    mode: ConversationMode
    members: dict[str, Member] = field(default_factory=dict)

    def joined(self) -> list[str]:
        return sorted(h for h, m in self.members.items() if m.state == "member")

    def admins(self) -> list[str]:
        return [h for h in self.joined() if self.members[h].role == "admin"]


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class GroupStore:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def load(self) -> dict[str, Group]:
        groups: dict[str, Group] = {}
        reader = self._store.reader
        async with reader.execute(
            "SELECT id, name, created_by, created_at, mode FROM groups"
        ) as cur:
            for gid, name, by, at, mode in await cur.fetchall():
                groups[gid] = Group(gid, name, by, _dt(at), mode)
        async with reader.execute(
            "SELECT grp, handle, role, state, added_by, since, hidden FROM group_members"
        ) as cur:
            for gid, handle, role, state, by, since, hidden in await cur.fetchall():
                if gid in groups:
                    groups[gid].members[handle] = Member(
                        handle, role, state, by, _dt(since), bool(hidden)
                    )
        return groups

    async def create(self, group: Group) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "INSERT INTO groups (id, name, created_by, created_at, mode) "
                "VALUES (?, ?, ?, ?, ?)",
                (group.id, group.name, group.created_by, _ts(group.created_at), group.mode),
            )
            for member in group.members.values():
                await _put(db, group.id, member)

    async def put_member(self, group: str, member: Member) -> None:
        async with self._store.transaction() as db:
            await _put(db, group, member)

    async def remove_member(self, group: str, handle: str) -> None:
        async with self._store.transaction() as db:
            await db.execute(
                "DELETE FROM group_members WHERE grp = ? AND handle = ?", (group, handle)
            )

    async def set_name(self, group: str, name: str) -> None:
        async with self._store.transaction() as db:
            await db.execute("UPDATE groups SET name = ? WHERE id = ?", (name, group))

    async def set_mode(self, group: str, mode: ConversationMode) -> None:
        async with self._store.transaction() as db:
            await db.execute("UPDATE groups SET mode = ? WHERE id = ?", (mode, group))

    async def delete(self, group: str) -> None:
        """The last member left: nothing of the group stays but its messages' metadata."""
        async with self._store.transaction() as db:
            await db.execute("DELETE FROM group_members WHERE grp = ?", (group,))
            await db.execute("DELETE FROM groups WHERE id = ?", (group,))

    async def sent_before(self, sender: str, copy_ids: list[str]) -> bool:
        """Was any copy of this group message stored already (a resend)? All copies of one
        send are written in one transaction, so one is as good as all."""
        if not copy_ids:
            return False
        marks = ", ".join("?" for _ in copy_ids)
        async with self._store.reader.execute(
            f"SELECT 1 FROM messages WHERE sender = ? AND msg_id IN ({marks}) LIMIT 1",
            (sender, *copy_ids),
        ) as cur:
            return await cur.fetchone() is not None


async def _put(db: aiosqlite.Connection, group: str, m: Member) -> None:
    await db.execute(
        "INSERT INTO group_members (grp, handle, role, state, added_by, since, hidden) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (grp, handle) DO UPDATE SET "
        "role = excluded.role, state = excluded.state, added_by = excluded.added_by, "
        "since = excluded.since, hidden = excluded.hidden",
        (group, m.handle, m.role, m.state, m.added_by, _ts(m.since), int(m.hidden)),
    )
