"""Find, read and validate a policy preset at relay start (fail fast, name the bad key)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from protocol.policy import Policy, parse_policy

#: The presets shipped in the repository (data, not code).
PRESETS_DIR = Path(__file__).resolve().parents[2] / "policies"
PRESET_NAMES = ("default", "strict", "open")


class PolicyError(Exception):
    """A policy that can't be used; the message names the file and the key."""


def policy_path(name_or_path: str) -> Path:
    if name_or_path.endswith(".toml") or "/" in name_or_path:
        return Path(name_or_path)
    return PRESETS_DIR / f"{name_or_path}.toml"


def load_policy(name_or_path: str) -> Policy:
    path = policy_path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        names = ", ".join(PRESET_NAMES)
        raise PolicyError(
            f"no policy {name_or_path!r}: use one of {names} or a PATH.toml"
        ) from None
    except OSError as exc:
        raise PolicyError(f"cannot read policy {path}: {exc}") from None
    try:
        return parse_policy(text)
    except msgspec.ValidationError as exc:
        # msgspec names the key: "Object contains unknown field `foo` - at `$.ages`"
        raise PolicyError(f"invalid policy {path}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise PolicyError(f"policy {path} is not valid TOML: {exc}") from None
