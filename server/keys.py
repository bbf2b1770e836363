"""Typed keys for what the relay app holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from server.config import RelayConfig
from server.group_commit import GroupCommitter
from server.hub import Hub
from server.store import Store

CONFIG = web.AppKey("config", RelayConfig)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
COMMITTER = web.AppKey("committer", GroupCommitter)
#: Handles of every registered account, cached so routing a message needs no query.
DIRECTORY = web.AppKey("directory", set[str])
RELAY_ID = web.AppKey("relay_id", str)
