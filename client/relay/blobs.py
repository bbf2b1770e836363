"""Uploading and downloading attachment bytes over the relay's signed HTTP routes
(PROTOCOL.md §6.6). Streams from and to files: a 16 MiB attachment never sits in memory.

What is uploaded is whatever the caller gives: the plaintext file in `visible` mode, the
ciphertext (protocol/crypto/attachment.py) in `e2ee` mode.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import aiohttp
import msgspec

from client.attachments import sha256_of
from client.errors import ClientError, error_message
from protocol.attachments import (
    HANDLE_HEADER,
    MODE_HEADER,
    SHA256_HEADER,
    SIGNATURE_HEADER,
    TIME_HEADER,
    UploadReceipt,
    download_message,
    upload_message,
)
from protocol.identity import rfc3339
from protocol.registration import ErrorBody
from protocol.types import Mode

CHUNK = 64 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=300, sock_connect=10)


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


async def _refusal(response: aiohttp.ClientResponse, server: str) -> ClientError:
    body = await response.read()
    try:
        error = msgspec.json.decode(body, type=ErrorBody).error
    except msgspec.DecodeError:
        return ClientError("protocol_error", f"HTTP {response.status} from {server}")
    return ClientError(error.code, error.message)


def _untrusted(exc: Exception) -> ClientError:
    return ClientError("tls_untrusted", f"{error_message('tls_untrusted')} ({exc})")


class BlobTransfer:
    """Signed uploads and downloads for one account. ``relay_id`` comes from the current
    connection's challenge (the signatures name the relay)."""

    def __init__(
        self,
        server: str,
        handle: str,
        sign: Callable[[bytes], bytes],
        relay_id: Callable[[], str],
        clock: Callable[[], datetime],
    ) -> None:
        self._server = server.rstrip("/")
        self._handle = handle
        self._sign = sign
        self._relay_id = relay_id
        self._clock = clock

    def _headers(self, message: bytes, at: datetime) -> dict[str, str]:
        return {
            HANDLE_HEADER: self._handle,
            TIME_HEADER: rfc3339(at),
            SIGNATURE_HEADER: base64.b64encode(self._sign(message)).decode(),
        }

    async def upload(self, blob_id: str, path: Path, mode: Mode) -> UploadReceipt:
        """Upload the file at ``path`` as blob ``blob_id`` (an id this account chose). A
        retried upload of the same bytes is answered like the first."""
        size = path.stat().st_size
        digest = sha256_of(path)
        at = self._clock()
        message = upload_message(self._relay_id(), self._handle, blob_id, mode, size, digest, at)
        headers = self._headers(message, at) | {
            MODE_HEADER: mode,
            SHA256_HEADER: digest,
            "Content-Length": str(size),
            "Content-Type": "application/octet-stream",
        }
        url = f"{self._server}/v1/blobs/{blob_id}"
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.put(url, data=_chunks(path), headers=headers) as response,
            ):
                if response.status in (200, 201):
                    return msgspec.json.decode(await response.read(), type=UploadReceipt)
                raise await _refusal(response, self._server)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ClientError(
                "tls_untrusted", f"{error_message('tls_untrusted')} ({exc})"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ClientError("upload_failed", f"The upload broke off ({exc}).") from None

    async def download(self, owner: str, blob_id: str, dest: Path, max_bytes: int) -> str:
        """Download blob ``owner``/``blob_id`` into ``dest`` (written through a temporary
        file, owner-only); returns the SHA-256 hex of what arrived. More than ``max_bytes``
        is refused (`download_too_large`)."""
        at = self._clock()
        message = download_message(self._relay_id(), self._handle, owner, blob_id, at)
        url = f"{self._server}/v1/blobs/{owner}/{blob_id}"
        partial = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        try:
            async with (
                aiohttp.ClientSession(timeout=TIMEOUT) as session,
                session.get(url, headers=self._headers(message, at)) as response,
            ):
                if response.status != 200:
                    raise await _refusal(response, self._server)
                received = 0
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        received += len(chunk)
                        if received > max_bytes:
                            raise ClientError("download_too_large", "The file is too large.")
                        digest.update(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(partial, dest)
            with contextlib.suppress(OSError):  # the rename, durable before the ack
                folder_fd = os.open(dest.parent, os.O_RDONLY)
                try:
                    os.fsync(folder_fd)
                finally:
                    os.close(folder_fd)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ClientError(
                "tls_untrusted", f"{error_message('tls_untrusted')} ({exc})"
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ClientError("download_failed", f"The download broke off ({exc}).") from None
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
        return digest.hexdigest()
