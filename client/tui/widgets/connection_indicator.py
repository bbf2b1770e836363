"""Connected / reconnecting / offline, in words."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


class ConnectionIndicator(Static):
    state: reactive[str] = reactive("connecting")
    WORDS = {
        "connected": "● connected",
        "connecting": "◌ connecting…",
        "reconnecting": "◌ reconnecting…",
        "offline": "○ offline",
    }

    def render(self) -> str:
        return self.WORDS.get(self.state, self.state)

    def watch_state(self, state: str) -> None:
        for s in self.WORDS:
            self.set_class(s == state, f"-{s}")
