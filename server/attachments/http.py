"""``PUT /v1/blobs/{id}`` and ``GET /v1/blobs/{owner}/{id}`` (PROTOCOL.md §6.6): signed
uploads and downloads of attachment bytes. Every refusal has its code; the body is streamed
to disk, never held in memory, and an upload becomes a blob only once its size and digest
match what the uploader signed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
from datetime import datetime

from aiohttp import web

from protocol import identity
from protocol.attachments import (
    HANDLE_HEADER,
    MODE_HEADER,
    REQUEST_SKEW,
    SHA256_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    UploadReceipt,
    download_message,
    upload_message,
)
from protocol.codec import encode
from server.app_keys import BLOBS, CONFIG, POLICY, RELAY_ID, SAFETY, STORE
from server.attachments.store import Blob, BlobConflict, QuotaExceeded, charge
from server.edge.http_errors import error_response

log = logging.getLogger("agechat.relay.blobs")

_HANDLE = re.compile(r"\A[a-z0-9_]{3,32}\Z")
_ID = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")
_SHA256 = re.compile(r"\A[0-9a-f]{64}\Z")
CHUNK = 64 * 1024
#: Uploads one account may have in progress at once.
MAX_UPLOADS_IN_FLIGHT = 4


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str | None = None) -> None:
        self.response = error_response(status, code, detail)


async def _signer(request: web.Request) -> tuple[str, datetime, bytes, bytes]:
    """(handle, time, signature, identity key) of a signed blob request, or `_Refused`."""
    handle = request.headers.get(HANDLE_HEADER, "")
    if not _HANDLE.match(handle):
        raise _Refused(401, "auth_failed", f"missing or malformed {HANDLE_HEADER}")
    try:
        at = datetime.fromisoformat(request.headers.get(TIME_HEADER, ""))
        signature = base64.b64decode(request.headers.get(SIGNATURE_HEADER, ""), validate=True)
    except (ValueError, binascii.Error):
        raise _Refused(401, "auth_failed", "malformed time or signature") from None
    if at.tzinfo is None:
        raise _Refused(401, "auth_failed", "the time needs a zone")
    if abs(at - request.app[CONFIG].clock()) > REQUEST_SKEW:
        raise _Refused(401, "stale_request")
    account = await request.app[STORE].get_account(handle)
    if account is None:
        raise _Refused(401, "auth_failed")
    return handle, at, signature, account.identity_key


def _not_suspended(request: web.Request, handle: str) -> None:
    """Only after the signature verified: before it, the answer would tell anyone which
    accounts are suspended."""
    if handle in request.app[SAFETY].suspended:
        raise _Refused(403, "account_suspended")


async def upload(request: web.Request) -> web.StreamResponse:
    try:
        return await _upload(request)
    except _Refused as refused:
        return refused.response


async def _upload(request: web.Request) -> web.StreamResponse:
    app = request.app
    blob_id = request.match_info["id"]
    if not _ID.match(blob_id):
        raise _Refused(400, "invalid_request", "malformed blob id")
    handle, at, signature, key = await _signer(request)
    mode = request.headers.get(MODE_HEADER, "")
    digest = request.headers.get(SHA256_HEADER, "")
    size = request.content_length
    if mode not in ("visible", "e2ee") or not _SHA256.match(digest):
        raise _Refused(400, "invalid_request", f"{MODE_HEADER} or {SHA256_HEADER}")
    if size is None:
        raise _Refused(411, "length_required")
    message = upload_message(app[RELAY_ID], handle, blob_id, mode, size, digest, at)  # type: ignore[arg-type]
    if not identity.verify(key, message, signature):
        raise _Refused(401, "bad_signature", "the upload")
    _not_suspended(request, handle)
    limits = app[POLICY].limits
    if size > limits.attachment_max_bytes:
        raise _Refused(413, "attachment_too_large")
    blobs = app[BLOBS]
    existing = await blobs.get(handle, blob_id)
    if existing is not None:
        return _retried(existing, size, digest, mode)
    flying = blobs.in_flight.setdefault(handle, [])
    if len(flying) >= MAX_UPLOADS_IN_FLIGHT:
        raise _Refused(429, "rate_limited", "too many uploads at once")
    if await blobs.usage(handle) + sum(flying) + charge(size) > limits.attachment_quota_bytes:
        raise _Refused(413, "attachment_quota_exceeded")
    flying.append(charge(size))
    try:
        return await _receive(request, handle, blob_id, mode, size, digest)
    finally:
        flying.remove(charge(size))
        if not flying:
            blobs.in_flight.pop(handle, None)


def _retried(existing: Blob, size: int, digest: str, mode: str) -> web.Response:
    """The same upload again is answered like the first; anything else under the id is a
    conflict."""
    same = existing.size == size and existing.mode == mode
    if same and hmac.compare_digest(existing.sha256.hex(), digest):
        return _receipt(200, existing.id, size, digest)
    raise _Refused(409, "blob_exists")


async def _receive(
    request: web.Request, handle: str, blob_id: str, mode: str, size: int, digest: str
) -> web.Response:
    app = request.app
    blobs = app[BLOBS]
    limits = app[POLICY].limits
    temp = blobs.temp_path()
    hasher = hashlib.sha256()
    received = 0
    try:
        with temp.open("wb") as out:
            async for chunk in request.content.iter_chunked(CHUNK):
                received += len(chunk)
                if received > size:
                    raise _Refused(400, "upload_mismatch", "more bytes than declared")
                hasher.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())  # acknowledged means on disk
        if received != size or not hmac.compare_digest(hasher.hexdigest(), digest):
            raise _Refused(400, "upload_mismatch", "the body isn't the one signed")
        try:
            await blobs.add(
                handle,
                blob_id,
                mode,
                size,
                hasher.digest(),
                temp,
                limits.attachment_quota_bytes,
                app[CONFIG].clock(),
            )
        except QuotaExceeded:
            raise _Refused(413, "attachment_quota_exceeded") from None
        except BlobConflict:  # a parallel upload of the same id got there first
            existing = await blobs.get(handle, blob_id)
            if existing is None:
                raise _Refused(409, "blob_exists") from None
            return _retried(existing, size, digest, mode)
    finally:
        temp.unlink(missing_ok=True)  # a refused or interrupted upload leaves nothing
    log.info("blob stored owner=%s id=%s size=%d mode=%s", handle, blob_id, size, mode)
    return _receipt(201, blob_id, size, digest)


def _receipt(status: int, blob_id: str, size: int, digest: str) -> web.Response:
    body = encode(UploadReceipt(id=blob_id, size=size, sha256=digest))
    return web.Response(status=status, body=body, content_type="application/json")


async def download(request: web.Request) -> web.StreamResponse:
    try:
        app = request.app
        owner, blob_id = request.match_info["owner"], request.match_info["id"]
        if not _HANDLE.match(owner) or not _ID.match(blob_id):
            raise _Refused(404, "not_found")
        handle, at, signature, key = await _signer(request)
        message = download_message(app[RELAY_ID], handle, owner, blob_id, at)
        if not identity.verify(key, message, signature):
            raise _Refused(401, "bad_signature", "the download")
        # The same answer for "no such blob" and "not yours": nothing to learn by probing.
        if not await app[BLOBS].may_download(handle, owner, blob_id):
            raise _Refused(404, "not_found")
        _not_suspended(request, handle)
    except _Refused as refused:
        return refused.response
    return web.FileResponse(
        app[BLOBS].path(owner, blob_id), headers={"Content-Type": "application/octet-stream"}
    )
