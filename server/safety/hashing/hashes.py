"""Hashing one file or byte string: exact hashes (SHA-256, MD5) for every file, and PDQ
(Meta's perceptual photo hash, computed by ``pdqhash``, the implementation
``threatexchange`` uses) for what Pillow decodes as an image.

Pure and thread-safe: nothing here keeps state between calls.

**Why an image gets no PDQ** (:data:`PdqSkip`, ``PdqResult.skipped``, ``Scan.pdq_skipped``,
``hash_file()["pdq_skipped"]``). Every file still gets its exact hashes.

``not_an_image``
    None of :data:`PDQ_FORMATS` recognises the file: not an image, or an image in another
    format (HEIC, SVG, PSD, ICO, PPM, ...), which only its exact hashes can match. A
    viewer that shows such a file shows something the matcher never saw.
``undecodable``
    A PDQ format recognised it, but even a lenient decode failed: junk after a valid
    signature, a file cut inside its header, a variant the decoder lacks. Truncated
    images are *not* this: they are decoded as far as they go, as viewers show them (the
    rest grey or black; a truncated WebP is padded to its declared length for libwebp).
    Rare for a real image; viewers mostly can't show these either. A caller that wants
    no gap holds them like ``too_large_to_decode``.
``too_large_to_decode``
    An image refused for its size, from its header, before decoding: over
    :data:`MAX_DECODE_PIXELS` (40 MP) as it would be decoded, a JPEG whose coefficients
    could take more than :data:`MAX_JPEG_COEFFICIENT_BYTES`, a header over twice
    :data:`PILLOW_MAX_PIXELS` (Pillow's DecompressionBombError), or memory running out. It
    *is* an image and nobody checked it, so it must not pass as clean: the relay holds a
    visible one for review. PNG, GIF, WebP, BMP, TIFF and AVIF get this over 40 MP (about
    6,300×6,300); JPEGs, decoded at reduced scale, only far larger (over 89 MP with 4:2:0
    colour, the usual; over 44 MP with 4:4:4).
``low_quality``
    (``Scan`` and ``bank add`` only) hashed, but its PDQ quality is below the policy's
    floor: too featureless for its hash to mean anything, so not looked up.

Only the first frame of an animated GIF, PNG or WebP, or of a multi-page TIFF, is hashed.

**Resources.** PDQ reduces every image to 64×64, so nothing needs the full resolution:
a JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale (``Image.draft``) to no less than
:data:`PDQ_SIDE` pixels a side, and any image is box-reduced by whole factors to under
twice that (in strips when its mode needs converting, so there is never a second
full-size copy) before PDQ. Measured with this project's synthetic picture (Pillow 13,
libjpeg-turbo; peak RSS above the process's, CPU time of one ``pdq_of``; every "match"
is 6 bits from the original's hash):

=============================================  ===================  =====================
input                                          before this limit    now
=============================================  ===================  =====================
8100×8100 JPEG, baseline 4:2:0 (2.0 MB)        skipped, no match    match; 131 MB, 0.13 s
8100×8100 JPEG, progressive 4:2:0 (1.6 MB)     skipped, no match    match; 198 MB, 0.37 s
9200×9200 JPEG, progressive 4:2:0 (1.9 MB)     skipped, no match    match; 241 MB, 0.30 s
8100×8100 JPEG, progressive 4:4:4 (2.6 MB)     skipped, no match    refused; 0 MB, 0 s
8000×8000 grey PNG (62 KB)                     1,705 MB, 4.6 s      refused; 0 MB, 0 s
8000×8000 RGBA PNG (250 KB)                    2,132 MB, 3.4 s      refused; 0 MB, 0 s
6300×6300 RGBA PNG (39.7 MP, 10 MB)            1,321 MB, 1.9 s      match; 183 MB, 0.79 s
6300×6300 grey PNG (39 KB)                     1,055 MB, 1.0 s      hashed; 62 MB, 0.12 s
=============================================  ===================  =====================

So one call peaks at about 250 MB at worst (a progressive JPEG at the coefficient limit;
pdqhash itself takes ~30 bytes a pixel of what it is given, up to 2047×2047), and the
relay runs at most two at once (``MATCH_SLOTS``). A reduced image's hash is 0–6 bits from
the full-size image's (synthetic 2100×1400 to 4000×3000 pictures), well inside the
default distance of 31.

**Process-wide Pillow settings**, made when this module is imported (the relay's only
Pillow user): ``ImageFile.LOAD_TRUNCATED_IMAGES`` (Pillow 13 has no per-call way to
decode a truncated file) and ``Image.MAX_IMAGE_PIXELS`` (see :data:`PILLOW_MAX_PIXELS`).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pdqhash
from PIL import Image, ImageFile, UnidentifiedImageError
from PIL.JpegImagePlugin import JpegImageFile

#: Files are read in chunks of this size for the exact hashes, so memory stays flat.
CHUNK: Final = 1 << 20

#: The only formats Pillow may open for PDQ (its other decoders are rarely used, and
#: more code to trust with hostile input). JPEG includes MPO, phones' multi-picture JPEG;
#: AVIF is Pillow 13's own (libavif). HEIC would need a plugin this project doesn't have.
PDQ_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
#: Images are decoded (JPEG) and reduced to no less than this many pixels a side where they
#: are larger, and under twice it. Their hash moves 0–6 bits from the full-size image's
#: (at 512, up to 10; resizing to exactly 1024 rather than by whole factors, up to 10).
PDQ_SIDE: Final = 1024
#: The most pixels decoded into memory for one image (after a JPEG's reduced decoding):
#: 40 MP, about 6,300×6,300, at most 160 MB as Pillow holds them (4 bytes a colour pixel).
MAX_DECODE_PIXELS: Final = 40_000_000
#: The most memory libjpeg may need for a JPEG's coefficients. A progressive JPEG (or a
#: sequential one in several scans, which the header doesn't tell) keeps every DCT
#: coefficient of the full-size image while decoding, whatever the scale: 2 bytes a pixel
#: per full-resolution component, so 3 for 4:2:0 colour (8100×8100: 197 MB), 6 for 4:4:4.
#: Every JPEG is held to this estimate. 256 MiB: 4:2:0 colour up to 89 MP, 4:4:4 up to 44.
MAX_JPEG_COEFFICIENT_BYTES: Final = 256 << 20
#: Pillow warns about an image whose header claims more pixels than this, and refuses one
#: over twice it (DecompressionBombError: ``too_large_to_decode``) before decoding anything.
#: Our own limits are tighter for what is decoded; this one bounds what Pillow allocates
#: while opening (a GIF's first frame: up to 200 MB at 200 MP), and lets through the JPEGs
#: the coefficient limit allows, without a warning for 4:2:0 ones.
PILLOW_MAX_PIXELS: Final = 100_000_000
#: Rows converted at a time when an image is reduced and its mode converted.
_STRIP_ROWS: Final = 256
#: The EXIF tag that says how a viewer rotates or flips the stored pixels, and the
#: transposition showing them as a viewer does (as ``ImageOps.exif_transpose``).
_ORIENTATION: Final = 0x0112
_TRANSPOSE: Final = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Modes with more than 8 bits of grey: shown by viewers scaled to 8 bits (Pillow's own
#: conversion clips them, which would turn most of such an image white).
_WIDE_GREY: Final = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})

# Decode what a truncated file holds, as viewers do, rather than refuse it: cutting bytes
# off a file must not evade matching. Process-wide; Pillow 13 offers no per-call switch.
ImageFile.LOAD_TRUNCATED_IMAGES = True
Image.MAX_IMAGE_PIXELS = PILLOW_MAX_PIXELS

#: Why an input got no PDQ lookup (the module docstring says what each means).
PdqSkip = Literal["not_an_image", "undecodable", "too_large_to_decode", "low_quality"]


@dataclass(frozen=True, slots=True)
class PdqResult:
    """PDQ of one input. ``hash`` is the hash of the stored pixels (what other PDQ tools,
    HMA and shared hash lists compute; for an image over 2047 pixels a side, of it
    reduced, a few bits from theirs); ``displayed`` is the hash of the image as a viewer
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
    """PDQ hash and quality (0–100) of an image file's bytes or path (its first frame), or
    why there is none (``skipped``: ``not_an_image``, ``undecodable``,
    ``too_large_to_decode``; the module docstring says what each means). The quality
    floor is the caller's (the policy's) to apply."""
    result = _pdq_of_file(io.BytesIO(source) if isinstance(source, bytes) else source)
    if result.skipped == "undecodable" and (padded := _padded_webp(source)) is not None:
        return _pdq_of_file(io.BytesIO(padded))
    return result


def _pdq_of_file(fp: io.BytesIO | Path) -> PdqResult:
    try:
        with Image.open(fp, formats=PDQ_FORMATS) as image:
            if not _prepare_decode(image):
                return PdqResult(None, None, skipped="too_large_to_decode")
            image.load()
            orientation = image.getexif().get(_ORIENTATION, 1)
            small = _for_pdq(image)
            if small is image:
                small = image.copy()
        # The full-size pixels are gone with the closed image: PDQ works on the small copy.
        stored, quality = _pdq(small)
        displayed = None
        if (turn := _TRANSPOSE.get(orientation)) is not None:
            displayed, _ = _pdq(small.transpose(turn))
            if displayed == stored:
                displayed = None
        return PdqResult(stored, quality, displayed)
    except UnidentifiedImageError:
        return PdqResult(None, None, skipped="not_an_image")
    except (Image.DecompressionBombError, MemoryError):
        return PdqResult(None, None, skipped="too_large_to_decode")
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error):
        # Corrupt data or an image mode nothing here can take: Pillow's decoders raise any
        # of these (SyntaxError is its historic "broken file" signal).
        return PdqResult(None, None, skipped="undecodable")


def _padded_webp(source: bytes | Path) -> bytes | None:
    """A truncated WebP padded with zeros to the length its RIFF header declares, or None.
    libwebp refuses a truncated file outright (LOAD_TRUNCATED_IMAGES doesn't reach it),
    while a browser shows what arrived; padded, it decodes, the missing part as flat
    blocks. Only up to the file's own length of padding: past half missing, nothing
    would match anyway."""
    if isinstance(source, Path):
        with source.open("rb") as f:
            head = f.read(12)
            length = os.fstat(f.fileno()).st_size
    else:
        head, length = source[:12], len(source)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WEBP":
        return None
    declared = int.from_bytes(head[4:8], "little") + 8
    if not length < declared <= 2 * length:
        return None
    data = source.read_bytes() if isinstance(source, Path) else source
    return data + bytes(declared - len(data)) if len(data) < declared else None


def _prepare_decode(image: Image.Image) -> bool:
    """Set a JPEG to decode at the smallest scale PDQ_SIDE allows; False when the image
    (as it would be decoded) is over the limits."""
    if isinstance(image, JpegImageFile):  # and MpoImageFile, its subclass
        if _jpeg_coefficient_bytes(image) > MAX_JPEG_COEFFICIENT_BYTES:
            return False
        image.draft(None, (PDQ_SIDE, PDQ_SIDE))
    width, height = image.size
    return width * height <= MAX_DECODE_PIXELS


def _jpeg_coefficient_bytes(image: JpegImageFile) -> int:
    """What libjpeg allocates to keep every coefficient of the full-size image: 64 of 2
    bytes per 8×8 block of each component, subsampled as the frame header says."""
    width, height = image.size
    # (id, horizontal, vertical sampling factor, table) per component, from the SOF marker.
    components = [(max(1, c[1]), max(1, c[2])) for c in image.layer] or [(1, 1)] * 4
    h_max = max(h for h, _ in components)
    v_max = max(v for _, v in components)
    blocks = sum(
        math.ceil(width * h / h_max / 8) * math.ceil(height * v / v_max / 8) for h, v in components
    )
    return blocks * 64 * 2


def _for_pdq(image: Image.Image) -> Image.Image:
    """The loaded image as 8-bit RGB or grey, box-reduced by whole factors to no less than
    PDQ_SIDE a side where it is larger (so under twice it). A mode that needs converting is
    converted a strip at a time, never as a second full-size copy."""
    width, height = image.size
    factor = (max(1, width // PDQ_SIDE), max(1, height // PDQ_SIDE))
    if image.mode in ("RGB", "L"):
        return image if factor == (1, 1) else image.reduce(factor)
    # Strips a whole number of reduction blocks tall: the same pixels as reducing at once.
    step = factor[1] * max(1, _STRIP_ROWS // factor[1])
    parts = []
    for top in range(0, height, step):
        strip = _eight_bit(image.crop((0, top, width, min(height, top + step))))
        parts.append(strip if factor == (1, 1) else strip.reduce(factor))
    out = Image.new(parts[0].mode, (parts[0].width, sum(p.height for p in parts)))
    y = 0
    for part in parts:
        out.paste(part, (0, y))
        y += part.height
    return out


def _eight_bit(image: Image.Image) -> Image.Image:
    if image.mode in _WIDE_GREY:
        # 16-bit grey as a viewer shows it: the top 8 bits.
        grey = np.clip(np.asarray(image), 0, 65535).astype(np.uint16) >> 8
        return Image.fromarray(grey.astype(np.uint8))
    # Luminance is what PDQ hashes: give pdqhash 8-bit RGB (or grey, replicated), never
    # palette indices, CMYK, alpha or 16-bit samples, which it would take as colours.
    return image.convert("RGB")


def _pdq(image: Image.Image) -> tuple[str, int]:
    if image.mode not in ("RGB", "L"):
        image = _eight_bit(image)
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
    there is no PDQ, or None; see the module docstring), ``sha256`` and ``md5`` (hex). The
    quality floor is not applied here."""
    pdq = pdq_of(path)
    return {
        "pdq": pdq.hash,
        "pdq_quality": pdq.quality,
        "pdq_skipped": pdq.skipped,
        **exact_hashes_of_path(path),
    }
