"""Relay configuration: everything the relay app is built from, passed in (no globals)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RelayConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    tls_cert: Path | None = None
    tls_key: Path | None = None
    insecure: bool = False
    policy: str = "default"
    #: SQLite `synchronous` pragma. FULL survives power loss; NORMAL survives process crashes.
    synchronous: str = "FULL"
    heartbeat_seconds: float = 30.0
    #: The relay operator as a CyberTipline report names its reporter (never sent anywhere).
    reporter_name: str = "agechat relay operator"
    reporter_email: str = "operator@agechat.invalid"
    #: Registrations from a loopback address are not rate-limited unless this is set: on
    #: loopback they come from this machine (tests, the demo, a simulator run). A relay
    #: behind a reverse proxy would see every address as loopback; it would have to read
    #: the forwarded address first, which the prototype doesn't (docs/POLICY.md "Limits").
    limit_loopback_registrations: bool = False
    #: Injected so tests can move time (birthdays, declaration freshness).
    clock: Callable[[], datetime] = field(default=utc_now)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "relay.sqlite3"
