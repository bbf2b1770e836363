"""The base of every frame (its own module so that frame families can live apart)."""

from __future__ import annotations

import msgspec


class Frame(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    """Base of every frame; the subclass's tag is its ``type``."""
