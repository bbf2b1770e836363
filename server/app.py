"""The relay application: ``create_app(config)`` builds it, nothing is global."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import msgspec
from aiohttp import WSCloseCode, web

from protocol.codec import encode
from protocol.limits import MAX_HTTP_BODY_BYTES
from protocol.registration import Health
from server.app_keys import (
    BLOBS,
    COMMITTER,
    CONFIG,
    FRANKING_SECRET,
    GROUPS,
    HUB,
    KEY_DIRECTORY,
    LIMITS,
    MATCHER,
    POLICY,
    QUOTA,
    RELAY_ID,
    SAFETY,
    SIGNALS,
    SOCIAL,
    STORE,
)
from server.attachments import http as blob_http
from server.attachments.store import BlobStore
from server.config import RelayConfig
from server.delivery.group_commit import GroupCommitter
from server.delivery.hub import Hub
from server.delivery.quota import WaitingQuota
from server.delivery.records import AckRecord, StoredMessage
from server.delivery.store import SqliteStore
from server.edge.http_errors import error_response
from server.edge.registration import register
from server.edge.websocket import websocket_handler
from server.groups.service import GroupService
from server.keys.directory import KeyDirectory
from server.keys.franking import load_or_create_secret
from server.policy.loader import load_policy
from server.rate_limits import RelayLimits
from server.safety.evidence import EvidenceSealer
from server.safety.hashing import HashMatcher, banks_dir
from server.safety.retention import RETENTION_META, sweep
from server.safety.service import SafetyService
from server.safety.signals_service import SignalsService
from server.social.service import SocialService

log = logging.getLogger("agechat.relay")

PRUNE_INTERVAL_SECONDS = 3600.0
WATCH_INTERVAL_SECONDS = 1.0
#: How soon after an acknowledgement its body leaves the WAL file too (PROTOCOL.md §5).
SCRUB_INTERVAL_SECONDS = 1.0
BAND_CHECK_SECONDS = 60.0


async def policy_route(request: web.Request) -> web.Response:
    """GET /v1/policy: the rules in force, so clients can explain them."""
    return web.Response(body=encode(request.app[POLICY]), content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    body = encode(Health(status="ok", relay_id=request.app[RELAY_ID]))
    return web.Response(body=body, content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Every HTTP failure gets the JSON error shape, never an HTML page or a traceback."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(404, "not_found")
    except web.HTTPMethodNotAllowed:
        return error_response(405, "invalid_request", f"{request.method} is not allowed here")
    except web.HTTPRequestEntityTooLarge:
        return error_response(413, "request_too_large")
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error")


async def _storage(app: web.Application) -> AsyncIterator[None]:
    """Open the store, start the single writer; on the way out flush and close in order."""
    config = app[CONFIG]
    store = SqliteStore(config.database_path, synchronous=config.synchronous)
    await store.open()
    relay_id = await store.get_meta("relay_id")
    if relay_id is None:
        relay_id = secrets.token_hex(16)
        await store.set_meta("relay_id", relay_id)
    app[FRANKING_SECRET] = await load_or_create_secret(store)
    hub = app[HUB]
    retention = app[POLICY].retention
    # The admin sweep (`agechat admin sweep`) applies the dials of the policy that runs.
    await store.set_meta(RETENTION_META, msgspec.json.encode(retention).decode())
    blobs = BlobStore(config.data_dir, store)
    app[BLOBS] = blobs
    # Banks are read once here: `agechat admin bank add` takes effect at the next start.
    app[MATCHER] = await asyncio.to_thread(
        HashMatcher.load, banks_dir(config.data_dir), app[POLICY].hash_matching
    )
    releases: set[asyncio.Task[None]] = set()
    quota = WaitingQuota(app[POLICY].limits)
    await quota.load(store)
    app[QUOTA] = quota
    app[LIMITS] = RelayLimits(app[POLICY].limits)

    def stored(messages: list[StoredMessage]) -> None:
        quota.stored(messages)
        hub.deliver(messages)

    def acked(acks: list[AckRecord], released: list[tuple[str, str]]) -> None:
        quota.acked(acks)
        hub.delivered(acks)
        if released:  # an attachment goes with its message's body (server/attachments/)
            task = asyncio.create_task(blobs.release(released))
            releases.add(task)
            task.add_done_callback(releases.discard)

    committer = GroupCommitter(
        store,
        config.clock,
        stored,
        acked,
        keep_visible=lambda: retention.visible_days > 0,
    )
    committer.start()
    app[STORE] = store
    app[RELAY_ID] = relay_id
    app[COMMITTER] = committer
    social = SocialService(store, app[POLICY], config.clock, committer)
    app[SOCIAL] = social
    app[KEY_DIRECTORY] = KeyDirectory(store)
    safety = SafetyService(
        store, social, EvidenceSealer.for_data_dir(config.data_dir), config.clock
    )
    app[SAFETY] = safety
    app[SIGNALS] = SignalsService(store, social, safety, config.clock, committer)
    groups = GroupService(store, social, committer)
    app[GROUPS] = groups
    await safety.load()  # before the social graph: moderator restrictions count from the start
    await social.load()
    await app[SIGNALS].load()
    await groups.load()
    social.on_band_changed = groups.bands_changed
    social.on_restricted = safety.on_restricted
    social.on_refusals_to_minors = safety.on_refusals_to_minors
    pruner = asyncio.create_task(
        _prune_forever(store, config, social, blobs, quota, app[SIGNALS])
    )
    watcher = asyncio.create_task(_watch_forever(store, social, safety))
    scrubber = asyncio.create_task(_scrub_forever(store, committer))
    log.info("relay ready relay_id=%s data_dir=%s", relay_id, config.data_dir)
    try:
        yield
    finally:
        pruner.cancel()
        watcher.cancel()
        scrubber.cancel()
        await app[SIGNALS].drain()
        await committer.stop()
        await store.close()


async def _prune_forever(
    store: SqliteStore,
    config: RelayConfig,
    social: SocialService,
    blobs: BlobStore,
    quota: WaitingQuota,
    signals: SignalsService,
) -> None:
    while True:
        try:
            now = config.clock()
            # Retention (and the resend window's end) for messages, evidence and logins.
            await sweep(store, social.policy.retention, now, config.data_dir / "outbox")
            await blobs.sweep(now)  # attachments nothing needs, unfinished uploads
            await quota.load(store)  # recount what waits (withdrawn messages have no ack)
            # Rate limits look back a day, restriction its window: older events count no more.
            keep = max(1, social.policy.restriction.window_days)
            await social.social.prune_events(now - timedelta(days=keep))
            signals.forget_idle(now)  # risk states of quiet conversations (on disk already)
        except Exception:
            log.exception("pruning failed")
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)


async def _scrub_forever(store: SqliteStore, committer: GroupCommitter) -> None:
    """Delete on ack, down to the disk: after acknowledgements, checkpoint and truncate the
    WAL so acknowledged bodies leave it within about ``SCRUB_INTERVAL_SECONDS``.

    Not after every batch: a checkpoint writes and syncs pages, which would cost every
    message; once a second is one checkpoint for all the acks of that second.
    """
    scrubbed = 0
    while True:
        await asyncio.sleep(SCRUB_INTERVAL_SECONDS)
        acked = committer.acked
        if acked == scrubbed:
            continue
        try:
            if await store.scrub_wal():
                scrubbed = acked
        except Exception:
            log.exception("scrubbing the WAL failed")


async def _watch_forever(store: SqliteStore, social: SocialService, safety: SafetyService) -> None:
    """Birthdays pass and admins edit birth dates: re-derive bands and announce changes.

    The admin command writes the database directly and bumps `meta.generation`; polling it
    is one indexed read a second.
    """
    generation = await store.get_meta("generation")
    last_band_check = asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(WATCH_INTERVAL_SECONDS)
        try:
            current = await store.get_meta("generation")
            now = asyncio.get_running_loop().time()
            if current != generation:
                generation = current
                await safety.load()  # roles granted or revoked by `agechat admin`
                await social.reload_accounts()
            elif now - last_band_check >= BAND_CHECK_SECONDS:
                last_band_check = now
                await social.check_bands()
                for handle in sorted(social.restricted):  # restrictions expire with the window
                    await social.refresh_restriction(handle)
        except Exception:
            log.exception("band watcher failed")


async def _close_sockets(app: web.Application) -> None:
    """On shutdown tell every client to go away (they reconnect elsewhere or later)."""
    await asyncio.gather(
        *(
            connection.close(WSCloseCode.GOING_AWAY, "relay shutting down")
            for connection in app[HUB].connections()
        )
    )


def create_app(config: RelayConfig) -> web.Application:
    app = web.Application(client_max_size=MAX_HTTP_BODY_BYTES, middlewares=[json_errors])
    app[CONFIG] = config
    app[HUB] = Hub()
    app[POLICY] = load_policy(config.policy)
    app.cleanup_ctx.append(_storage)
    app.on_shutdown.append(_close_sockets)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/v1/accounts", register)
    app.router.add_get("/v1/policy", policy_route)
    app.router.add_get("/v1/ws", websocket_handler)
    app.router.add_put("/v1/blobs/{id}", blob_http.upload)
    app.router.add_get("/v1/blobs/{owner}/{id}", blob_http.download)
    return app
