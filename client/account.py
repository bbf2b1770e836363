"""Creating an account: keys made here, a signed age declaration, registration over HTTP.

The profile is written to a side file before registering and moved into place after the
relay accepts, so a crash in between never leaves a registered account without its key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path

import aiohttp
import msgspec
import nacl.signing

from client.declaration import sign_declaration
from client.errors import ClientError, error_message
from client.history import History
from client.keystore import INTERACTIVE, KdfLimits, SealedSecret, seal, unseal
from client.profile import PROFILE_FILE, Identity, Profile, ProfileData
from client.relay import RelayClient, websocket_url
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
    pending = directory / (PROFILE_FILE + ".pending")
    signing_key, sealed = _key_for(pending, server, handle, passphrase, kdf)
    now = clock()
    request = build_registration(signing_key, handle, display_name, birthdate, now)
    data = ProfileData(
        handle=handle,
        display_name=display_name,
        server=server,
        birthdate=birthdate,
        identity_key=request.identity_key,
        created_at=now,
        secret=sealed,
    )
    # The key is on disk before the relay hears of it; nothing after this loses it.
    Profile.write_file(pending, data)
    try:
        await _post_registration(server, request)
    except ClientError as exc:
        if exc.code not in UNKNOWN_OUTCOME:
            pending.unlink(missing_ok=True)  # refused: the relay has no such account
            raise
        raise ClientError(
            exc.code,
            f"{exc.message} The relay may or may not have registered @{handle}; the new key is "
            f"kept in {pending}. Run the same command again to finish.",
        ) from None
    pending.replace(Profile.path_in(directory))
    profile = Profile(directory, data)
    # Publish prekeys now, so others can start an encrypted chat before our first login.
    # Best effort: every later connection publishes whatever is still due.
    await publish_prekeys(profile, Identity(signing_key))
    return profile


async def publish_prekeys(profile: Profile, identity: Identity, timeout: float = 10.0) -> bool:
    """Connect once, publish the signed and one-time prekeys that are due, disconnect."""
    history = History(profile.history_path)
    await history.open()
    try:
        async with RelayClient(profile, identity, history, reconnect=False) as client:
            await client.wait_connected(timeout)
            await asyncio.wait_for(client.prekeys_published.wait(), timeout)
        return True
    except (ClientError, TimeoutError):
        return False
    finally:
        await history.close()


#: Registration failures after which the relay may have registered the account anyway.
UNKNOWN_OUTCOME = frozenset({"timeout", "relay_unreachable_after_send"})


def _key_for(
    pending: Path, server: str, handle: str, passphrase: str, kdf: KdfLimits
) -> tuple[nacl.signing.SigningKey, SealedSecret]:
    """A fresh key, or the one kept from an unfinished registration of the same handle.

    The relay treats a repeat registration with the same key as success (idempotent), so
    retrying with the kept key finishes the first attempt instead of orphaning it.
    """
    if pending.exists():
        try:
            earlier = msgspec.json.decode(pending.read_bytes(), type=ProfileData)
        except msgspec.DecodeError:
            earlier = None
        if earlier is not None and (earlier.handle, earlier.server) != (handle, server):
            raise ClientError(
                "registration_pending",
                f"An earlier registration of @{earlier.handle} on {earlier.server} did not "
                f"finish. Run that command again, or delete {pending} to abandon it.",
            )
        if earlier is not None:
            key = nacl.signing.SigningKey(unseal(earlier.secret, passphrase))
            return key, earlier.secret
    key = nacl.signing.SigningKey.generate()
    return key, seal(bytes(key), passphrase, kdf)


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
    except (aiohttp.ClientConnectorError, ConnectionRefusedError) as exc:
        # Never connected: certainly not registered.
        raise ClientError("relay_unreachable", f"Could not reach {server} ({exc}).") from None
    except TimeoutError:
        raise ClientError("timeout", f"{server} did not answer in time.") from None
    except (aiohttp.ClientError, OSError) as exc:
        # Connected, then lost: the relay may have registered the account.
        raise ClientError(
            "relay_unreachable_after_send", f"The connection to {server} broke ({exc})."
        ) from None
    try:
        error = msgspec.json.decode(body, type=ErrorBody).error
    except msgspec.DecodeError:
        raise ClientError("protocol_error", f"HTTP {response.status} from {server}") from None
    raise ClientError(error.code, error.message)
