"""Typed keys for what the relay app holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from protocol.policy import Policy
from server.attachments.store import BlobStore
from server.config import RelayConfig
from server.delivery.group_commit import GroupCommitter
from server.delivery.hub import Hub
from server.delivery.quota import WaitingQuota
from server.delivery.store import Store
from server.groups.service import GroupService
from server.keys.directory import KeyDirectory
from server.rate_limits import RelayLimits
from server.safety.hashing import HashMatcher
from server.safety.service import SafetyService
from server.safety.signals_service import SignalsService
from server.social.service import SocialService

CONFIG = web.AppKey("config", RelayConfig)
STORE = web.AppKey("store", Store)
HUB = web.AppKey("hub", Hub)
COMMITTER = web.AppKey("committer", GroupCommitter)
#: The policy in force and its enforcement (accounts, contacts, blocks, bands).
POLICY = web.AppKey("policy", Policy)
SOCIAL = web.AppKey("social", SocialService)
KEY_DIRECTORY = web.AppKey("key_directory", KeyDirectory)
RELAY_ID = web.AppKey("relay_id", str)
#: The relay's franking secret (PROTOCOL.md §6.4; server/keys/franking.py). Never logged.
FRANKING_SECRET = web.AppKey("franking_secret", bytes)
#: What waits for each recipient and pair (server/delivery/quota.py).
QUOTA = web.AppKey("quota", WaitingQuota)
#: Per-minute and per-hour limits (server/rate_limits.py).
LIMITS = web.AppKey("limits", RelayLimits)
#: Groups and their members, and the fan-out of group messages (server/groups/).
GROUPS = web.AppKey("groups", GroupService)
#: Cases, queues, roles, evidence and the audit log (server/safety/).
SAFETY = web.AppKey("safety", SafetyService)
#: Attachment bytes and their records (server/attachments/).
BLOBS = web.AppKey("blobs", BlobStore)
#: Grooming-risk signals applied to stored messages (server/safety/signals_service.py).
SIGNALS = web.AppKey("signals", SignalsService)
#: The hash banks, loaded at start (server/safety/hashing/).
MATCHER = web.AppKey("matcher", HashMatcher)
