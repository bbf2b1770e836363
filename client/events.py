"""What the client library tells its user (the CLI, the TUI): one dataclass per event."""

from __future__ import annotations

from dataclasses import dataclass

from client.history import HistoryMessage


@dataclass(frozen=True, slots=True)
class Connected:
    handle: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection dropped. ``retry_in`` is None when the client will not reconnect."""

    code: str
    message: str
    retry_in: float | None


@dataclass(frozen=True, slots=True)
class Synced:
    """Everything queued at the relay when this connection opened has arrived."""


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message: HistoryMessage


@dataclass(frozen=True, slots=True)
class MessageAccepted:
    """The relay stored an outgoing message durably."""

    message: HistoryMessage


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """The recipient's client stored an outgoing message (a delivery receipt)."""

    message: HistoryMessage


@dataclass(frozen=True, slots=True)
class MessageRefused:
    message: HistoryMessage
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class RelayError:
    """A refusal that is not about one message (a malformed frame, for instance)."""

    code: str
    message: str


ClientEvent = (
    Connected
    | Disconnected
    | Synced
    | MessageReceived
    | MessageAccepted
    | MessageDelivered
    | MessageRefused
    | RelayError
)
