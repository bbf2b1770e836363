"""Hashing one file or byte string: exact hashes (SHA-256, MD5) for every file, and PDQ
(Meta's perceptual photo hash, computed by ``pdqhash``, the implementation
``threatexchange`` uses) for what Pillow decodes as an image.

Pure and thread-safe: nothing here keeps state between calls.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pdqhash
from PIL import Image, ImageOps, UnidentifiedImageError

#: Files are read in chunks of this size for the exact hashes, so memory stays flat.
CHUNK: Final = 1 << 20
#: Larger images are not PDQ-hashed (``too_large``): decoding them would take hundreds of MB.
#: 64 megapixels is 8000×8000; Pillow's own decompression-bomb limit is 89.
MAX_PDQ_PIXELS: Final = 64_000_000
#: The EXIF tag that says how a viewer rotates or flips the stored pixels.
_ORIENTATION: Final = 0x0112

#: Why an input got no PDQ lookup.
PdqSkip = Literal["not_an_image", "undecodable", "too_large", "low_quality"]


@dataclass(frozen=True, slots=True)
class PdqResult:
    """PDQ of one input. ``hash`` is the hash of the stored pixels (what other PDQ tools,
    HMA and shared hash lists compute); ``displayed`` is the hash of the image as a viewer
    shows it when an EXIF orientation tag rotates or flips it (else None), so pixels rotated
    and tagged back upright still match. Both are None when ``skipped`` says why."""

    hash: str | None
    quality: int | None
    displayed: str | None = None
    skipped: PdqSkip | None = None


def exact_hashes_of_bytes(data: bytes) -> dict[str, str]:
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
    }


def exact_hashes_of_path(path: Path) -> dict[str, str]:
    """SHA-256 and MD5 of a file, read in chunks (a 16 MiB attachment never sits in memory)."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha256.update(chunk)
            md5.update(chunk)
    return {"sha256": sha256.hexdigest(), "md5": md5.hexdigest()}


def pdq_of(source: bytes | Path) -> PdqResult:
    """PDQ hash and quality (0–100) of an image file's bytes or path; non-images, images
    Pillow can't decode and images over MAX_PDQ_PIXELS are skipped, saying why. The
    quality floor is the caller's (the policy's) to apply."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
            if width * height > MAX_PDQ_PIXELS:
                return PdqResult(None, None, skipped="too_large")
            image.load()
            stored, quality = _pdq(image)
            displayed = None
            if image.getexif().get(_ORIENTATION, 1) not in (0, 1):
                turned = ImageOps.exif_transpose(image)
                displayed, _ = _pdq(turned)
                if displayed == stored:
                    displayed = None
            return PdqResult(stored, quality, displayed)
    except UnidentifiedImageError:
        return PdqResult(None, None, skipped="not_an_image")
    except Image.DecompressionBombError:
        return PdqResult(None, None, skipped="too_large")
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError):
        # Truncated or corrupt data, or an image mode pdqhash can't take: Pillow raises any
        # of these; SyntaxError is its historic "broken file" signal.
        return PdqResult(None, None, skipped="undecodable")


def _pdq(image: Image.Image) -> tuple[str, int]:
    # Luminance is what PDQ hashes: give pdqhash 8-bit RGB (or grey, replicated), never
    # palette indices, CMYK, alpha or 16-bit samples, which it would take as colours.
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., np.newaxis], 3, axis=2)
    vector, quality = pdqhash.compute(pixels)
    # Bit i of the hash is bit i of the hex string, most significant first: the same string
    # as threatexchange's pdq_from_bytes (a test checks it).
    return np.packbits(vector.astype(np.uint8)).tobytes().hex(), int(quality)


def hash_file(path: Path) -> dict[str, str | int | None]:
    """Every hash of one file, as ``bank add`` records it: ``pdq`` (hex, or None when it
    isn't an image PDQ can hash), ``pdq_quality`` (0–100, or None), ``pdq_skipped`` (why
    there is no PDQ, or None), ``sha256`` and ``md5`` (hex). The quality floor is not
    applied here."""
    pdq = pdq_of(path)
    return {
        "pdq": pdq.hash,
        "pdq_quality": pdq.quality,
        "pdq_skipped": pdq.skipped,
        **exact_hashes_of_path(path),
    }
