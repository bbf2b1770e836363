"""The Textual chat app. It talks to the client library (ChatSession) only."""

from client.tui.app import AgechatApp

__all__ = ["AgechatApp"]
