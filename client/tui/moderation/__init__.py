"""The moderation console (`agechat moderate`): a Textual app for moderators.

It is given a moderation backend (the client library's ``client.moderation``, or anything
with the same async methods) and never opens a connection itself.
"""

from client.tui.moderation.backend import ModerationBackend
from client.tui.moderation.console import ModerationConsole

__all__ = ["ModerationBackend", "ModerationConsole"]
