"""Creating an account: keys made here, a signed age declaration, registration over HTTP.

The profile is written to a side file before registering and moved into place after the
relay accepts, so a crash in between never leaves a registered account without its key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import aiohttp
import msgspec
import nacl.signing

from client.declaration import sign_declaration
from client.errors import ClientError, error_message
from client.keystore import INTERACTIVE, KdfLimits, seal
from client.profile import PROFILE_FILE, Profile, ProfileData
from client.relay import websocket_url
from client.timeutil import utc_now
from protocol import identity
from protocol.codec import encode
from protocol.registration import ErrorBody, RegisterRequest

REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)


def build_registration(
    signing_key: nacl.signing.SigningKey,
    handle: str,
    display_name: str,
    birthdate: date,
    now: datetime,
) -> RegisterRequest:
    public = bytes(signing_key.verify_key)
    declaration = sign_declaration(signing_key, handle, birthdate, now)
    return RegisterRequest(
        handle=handle,
        display_name=display_name,
        identity_key=public,
        dh_identity_key=identity.dh_key_for(public),
        birthdate=birthdate,
        declaration=declaration,
    )


async def create_account(
    directory: Path,
    *,
    server: str,
    handle: str,
    display_name: str,
    birthdate: date,
    passphrase: str,
    kdf: KdfLimits = INTERACTIVE,
    clock: Callable[[], datetime] = utc_now,
) -> Profile:
    if Profile.exists(directory):
        raise ClientError("profile_exists", f"{directory} already has an account.")
    websocket_url(server)  # validates the URL's scheme
    server = server.rstrip("/")
    signing_key = nacl.signing.SigningKey.generate()
    now = clock()
    request = build_registration(signing_key, handle, display_name, birthdate, now)
    data = ProfileData(
        handle=handle,
        display_name=display_name,
        server=server,
        birthdate=birthdate,
        identity_key=request.identity_key,
        created_at=now,
        secret=seal(bytes(signing_key), passphrase, kdf),
    )
    pending = directory / (PROFILE_FILE + ".pending")
    Profile.write_file(pending, data)
    try:
        await _post_registration(server, request)
    except BaseException:
        with contextlib.suppress(OSError):
            pending.unlink()
        raise
    pending.replace(Profile.path_in(directory))
    return Profile(directory, data)


async def _post_registration(server: str, request: RegisterRequest) -> None:
    try:
        async with (
            aiohttp.ClientSession(timeout=REQUEST_TIMEOUT) as session,
            session.post(
                f"{server}/v1/accounts",
                data=encode(request),
                headers={"Content-Type": "application/json"},
            ) as response,
        ):
            body = await response.read()
            if response.status == 201:
                return
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ClientError("tls_untrusted", f"{error_message('tls_untrusted')} ({exc})") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ClientError("relay_unreachable", f"Could not reach {server} ({exc}).") from None
    try:
        error = msgspec.json.decode(body, type=ErrorBody).error
    except msgspec.DecodeError:
        raise ClientError("protocol_error", f"HTTP {response.status} from {server}") from None
    raise ClientError(error.code, error.message)
