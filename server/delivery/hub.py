"""Who is connected: one connection per handle, and fan-out of committed messages."""

from __future__ import annotations

from server.config import utc_now
from server.delivery.connection import Connection
from server.delivery.records import AckRecord, StoredMessage


class Hub:
    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}

    def attach(self, connection: Connection) -> Connection | None:
        """Register a connection; return the one it replaces, if any."""
        previous = self._connections.get(connection.handle)
        self._connections[connection.handle] = connection
        return previous

    def detach(self, connection: Connection) -> None:
        if self._connections.get(connection.handle) is connection:
            del self._connections[connection.handle]

    def connection(self, handle: str) -> Connection | None:
        return self._connections.get(handle)

    def connections(self) -> list[Connection]:
        """A copy, so callers may close connections while iterating."""
        return list(self._connections.values())

    def delivered(self, acks: list[AckRecord]) -> None:
        """Delivery receipts to senders who are connected now (best effort)."""
        now = utc_now()  # one moment for the batch: its acks were committed together
        for ack in acks:
            connection = self._connections.get(ack.sender)
            if connection is not None:
                connection.push_receipt(ack, now)

    def deliver(self, stored: list[StoredMessage]) -> None:
        for message in stored:
            connection = self._connections.get(message.recipient)
            if connection is not None:
                connection.push(message)

    def __len__(self) -> int:
        return len(self._connections)
