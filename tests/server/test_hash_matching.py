"""Known-material hash matching (issue 13): banks on disk, PDQ and exact matching, the
policy's thresholds, malformed banks named by file and line.

Every image here is synthetic and benign, generated with Pillow and numpy (gradients,
blobs, shapes, noise); no real material and no real hash list.

What PDQ tolerates, measured on these images: JPEG quality 60 moves 0–6 bits, a 0.5× resize
8–22, 1.5× 0–6, a centred 2% crop (1% off each edge) 6–28; a 4% crop already reaches 20–40
and a 5% one 30–55, past the default distance of 31. PDQ is not built for crops; the test
uses the 2% crop and the seeds whose copies fit with margin.
"""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, features

from protocol.policy import HashMatching
from server.safety.hashing import BankError, HashMatcher, Match, banks_dir, hash_file
from server.safety.hashing.banks import bank_counts
from server.safety.hashing.hashes import (
    MAX_DECODE_PIXELS,
    PDQ_FORMATS,
    PDQ_SIDE,
    _for_pdq,
    _prepare_decode,
    pdq_of,
)
from server.safety.hashing.matcher import banks_fingerprint

BANKED = (0, 1, 4, 5)  # seeds of the images put in the bank
UNRELATED = range(100, 112)


def synthetic(seed: int, w: int = 480, h: int = 360) -> Image.Image:
    """A benign photo-like picture: soft colour blobs, a few hard shapes, light noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((h, w, 3), np.float32)
    for _ in range(5):
        cx, cy, s = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.1, 0.3) * w
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))[..., None]
        field += blob * (rng.uniform(-1, 1, 3) * 120).astype(np.float32)
    pixels = np.clip(128 + field + rng.normal(0, 3, (h, w, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.integers(0, w * 3 // 4), rng.integers(0, h * 3 // 4)
        x1, y1 = x0 + rng.integers(w // 8, w // 3), y0 + rng.integers(h // 8, h // 3)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse, draw.rectangle)[int(rng.integers(2))]([x0, y0, x1, y1], fill=colour)
    return image


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def crop(image: Image.Image, fraction: float) -> Image.Image:
    w, h = image.size
    dx, dy = round(w * fraction / 2), round(h * fraction / 2)
    return image.crop((dx, dy, w - dx, h - dy))


def resize(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize((round(w * factor), round(h * factor)))


COPIES = {
    "jpeg_q60": lambda im: encode(im.convert("RGB"), "JPEG", quality=60),
    "half_size": lambda im: encode(resize(im, 0.5)),
    "one_and_a_half": lambda im: encode(resize(im, 1.5)),
    "crop_2pct": lambda im: encode(crop(im, 0.02)),
    "crop_resize_jpeg": lambda im: encode(resize(crop(im, 0.02), 0.5), "JPEG", quality=60),
}


def write_bank(root: Path, bank: str, signal: str, *lines: str) -> Path:
    path = root / bank / f"{signal}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.writelines(f"{line}\n" for line in lines)
    return path


@pytest.fixture(scope="module")
def images() -> dict[int, Image.Image]:
    return {seed: synthetic(seed) for seed in (*BANKED, *UNRELATED)}


@pytest.fixture(scope="module")
def bank_root(tmp_path_factory, images) -> Path:
    """A data dir's banks: the BANKED images' PDQ in `test_images` with labels."""
    root = banks_dir(tmp_path_factory.mktemp("data"))
    lines = []
    for seed in BANKED:
        result = pdq_of(encode(images[seed]))
        assert result.quality is not None and result.quality >= 50
        lines.append(f"{result.hash} synthetic image {seed}")
    write_bank(root, "test_images", "pdq", "# generated test images", "", *lines)
    return root


@pytest.fixture(scope="module")
def matcher(bank_root) -> HashMatcher:
    return HashMatcher.load(bank_root, HashMatching())


@pytest.mark.parametrize("copy", COPIES)
@pytest.mark.parametrize("seed", BANKED)
def test_altered_copies_of_a_banked_image_match(matcher, images, seed, copy):
    found = matcher.match_bytes(COPIES[copy](images[seed]))
    assert [m.label for m in found] == [f"synthetic image {seed}"]
    (m,) = found
    assert m.bank == "test_images" and m.signal == "pdq"
    assert 0 <= m.distance <= 31 and m.quality is not None and m.quality >= 50
    assert m.matched_hash == pdq_of(encode(images[seed])).hash


def test_unrelated_images_do_not_match(matcher, images):
    for seed in UNRELATED:
        scan = matcher.scan_bytes(encode(images[seed]))
        assert scan.matches == (), seed
        assert scan.pdq_skipped in (None, "low_quality") and "pdq" in scan.hashes


def test_match_path_is_match_bytes(matcher, images, tmp_path):
    path = tmp_path / "copy.jpg"
    path.write_bytes(COPIES["jpeg_q60"](images[BANKED[0]]))
    assert matcher.match_path(path) == matcher.match_bytes(path.read_bytes())
    assert len(matcher.match_path(path)) == 1


def test_an_exact_copy_of_any_file_matches_by_sha256_and_md5(tmp_path):
    payload = np.random.default_rng(7).bytes(3 * (1 << 20) + 17)  # > the 1 MiB read chunk
    banked = tmp_path / "banked.bin"
    banked.write_bytes(payload)
    hashes = hash_file(banked)
    assert hashes["pdq"] is None and hashes["pdq_skipped"] == "not_an_image"
    root = tmp_path / "banks"
    write_bank(root, "files", "sha256", f"{hashes['sha256']} a test file")
    write_bank(root, "files", "md5", str(hashes["md5"]).upper())  # either case is read
    matcher = HashMatcher.load(root, HashMatching())

    found = matcher.match_path(banked)
    assert found == matcher.match_bytes(payload)
    assert [(m.signal, m.distance, m.label, m.quality) for m in found] == [
        ("sha256", 0, "a test file", None),
        ("md5", 0, "", None),
    ]
    assert found[1].matched_hash == hashes["md5"]
    assert matcher.match_bytes(payload[:-1] + b"\x00") == []
    assert matcher.scan_bytes(payload).pdq_skipped == "not_an_image"

    only_sha = HashMatcher.load(root, HashMatching(exact=["sha256"]))
    assert [m.signal for m in only_sha.match_bytes(payload)] == ["sha256"]
    assert HashMatcher.load(root, HashMatching(exact=[])).match_bytes(payload) == []


def test_a_flat_image_is_not_matched_by_pdq(tmp_path):
    flat = encode(Image.new("RGB", (400, 300), (120, 30, 200)))
    result = pdq_of(flat)
    assert result.quality is not None and result.quality < 50
    root = tmp_path / "banks"
    write_bank(root, "flat", "pdq", f"{result.hash} a flat image")
    matcher = HashMatcher.load(root, HashMatching())
    resized = encode(Image.new("RGB", (640, 480), (120, 30, 200)))
    other_colour = encode(Image.new("RGB", (640, 480), (10, 220, 40)))
    for data in (flat, resized, other_colour):
        scan = matcher.scan_bytes(data)
        assert scan.matches == () and scan.pdq_skipped == "low_quality"
        assert scan.hashes["pdq"] and scan.pdq_quality == 0
    # Without the floor it matches: a featureless image's bits are rounding noise, so such
    # hashes say little (the floor keeps them out of the lookup).
    floorless = HashMatcher.load(root, HashMatching(pdq_min_quality=0))
    assert [m.signal for m in floorless.match_bytes(resized)] == ["pdq"]


def test_the_distance_threshold_is_honoured(bank_root, images):
    copy = COPIES["half_size"](images[BANKED[0]])
    distance = HashMatcher.load(bank_root, HashMatching()).match_bytes(copy)[0].distance
    assert distance > 0
    at = HashMatcher.load(bank_root, HashMatching(pdq_max_distance=distance))
    below = HashMatcher.load(bank_root, HashMatching(pdq_max_distance=distance - 1))
    assert [m.distance for m in at.match_bytes(copy)] == [distance]
    assert below.match_bytes(copy) == []
    # Wide enough, everything matches everything: why 31.
    wide = HashMatcher.load(bank_root, HashMatching(pdq_max_distance=256))
    assert len(wide.match_bytes(encode(images[UNRELATED[0]]))) == len(BANKED)


def test_the_quality_floor_is_honoured(bank_root, images):
    data = encode(images[BANKED[0]])
    quality = pdq_of(data).quality
    assert quality is not None and quality < 100
    assert HashMatcher.load(bank_root, HashMatching(pdq_min_quality=quality)).match_bytes(data)
    strict = HashMatcher.load(bank_root, HashMatching(pdq_min_quality=quality + 1))
    assert strict.scan_bytes(data).matches == ()
    assert strict.scan_bytes(data).pdq_skipped == "low_quality"


def test_the_index_finds_exactly_what_a_brute_force_scan_finds(tmp_path):
    """Multi-index hashing is exact for any distance: compare with numpy on random hashes
    and queries 0–60 bits away from bank entries."""
    rng = np.random.default_rng(3)
    bank = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    write_bank(tmp_path, "random", "pdq", *(row.tobytes().hex() for row in bank))
    queries = []
    for k in range(0, 61, 3):
        q = bank[rng.integers(len(bank))].copy()
        for bit in rng.choice(256, k, replace=False):
            q[bit // 8] ^= 1 << (7 - bit % 8)
        queries.append(q)
    bits = np.unpackbits(bank, axis=1)
    for max_distance in (31, 47):
        index = HashMatcher.load(tmp_path, HashMatching(pdq_max_distance=max_distance))._pdq
        for q in queries:
            distances = (bits != np.unpackbits(q)).sum(axis=1)
            expected = {
                int(i): int(distances[i]) for i in np.flatnonzero(distances <= max_distance)
            }
            found = index.search([q.tobytes().hex()], max_distance)
            assert {row: d for row, (_, d) in found.items()} == expected


def test_pdq_is_threatexchanges(images):
    """Our hash of a decoded image is the string threatexchange's own hasher gives."""
    from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

    for seed in BANKED:
        data = encode(images[seed], "JPEG", quality=90)
        assert (pdq_of(data).hash, pdq_of(data).quality) == pdq_from_bytes(data)


def test_palette_and_alpha_images_hash_as_what_they_show(matcher, images):
    image = images[BANKED[1]]
    for variant in (image.convert("P", palette=Image.Palette.ADAPTIVE), image.convert("RGBA")):
        assert [m.label for m in matcher.match_bytes(encode(variant))] == [
            f"synthetic image {BANKED[1]}"
        ]


def test_pixels_rotated_and_tagged_upright_still_match(matcher, images):
    """Pixels stored rotated with an EXIF orientation that shows them upright: the viewer's
    image is looked up too."""
    image = images[BANKED[2]].transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display" (the pixels were turned the other way)
    data = encode(image, "JPEG", quality=90, exif=exif)
    stored = pdq_of(data)
    assert stored.displayed is not None
    assert matcher._pdq.search([stored.hash], 31) == {}  # the stored pixels alone: no match
    assert [m.label for m in matcher.match_bytes(data)] == [f"synthetic image {BANKED[2]}"]


def test_broken_images_skip_pdq_but_keep_exact_hashes(matcher, images):
    png, jpeg = encode(images[BANKED[0]]), encode(images[BANKED[0]], "JPEG", quality=90)
    junk = np.random.default_rng(1).bytes(500)
    # A PNG signature before junk, and a JPEG cut inside its header tables: nothing to show.
    for broken in (png[:8] + junk, jpeg[:400]):
        scan = matcher.scan_bytes(broken)
        assert scan.pdq_skipped == "undecodable" and scan.matches == ()
        assert set(scan.hashes) == {"sha256", "md5"}


@pytest.mark.parametrize(
    ("fmt", "cut"),
    [("JPEG", 200), ("JPEG", 1000), ("PNG", 300), ("WEBP", 200), ("GIF", 200), ("TIFF", 200)],
)
def test_truncated_copies_of_a_banked_image_still_match(matcher, images, fmt, cut):
    """Bytes cut off the end: viewers show what arrived (the rest grey or black), and so is
    it hashed. Not a way around the bank."""
    image = images[BANKED[0]]
    data = encode(image, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    assert pdq_of(data).skipped is None
    scan = matcher.scan_bytes(data[:-cut])
    assert scan.pdq_skipped is None
    assert [m.label for m in scan.matches] == [f"synthetic image {BANKED[0]}"]


def test_a_huge_jpeg_is_decoded_reduced_and_matches(matcher, images, tmp_path):
    """8100×8100 is over the 40 MP decode limit, but libjpeg decodes it at 1/4 scale
    (2025×2025, 4 MP): it matches, and the full size is never in memory. Grey keeps the
    test's own memory small (66 MB); PDQ hashes luminance, so it matches the colour bank."""
    big = images[BANKED[1]].convert("L").resize((8100, 8100), Image.Resampling.BILINEAR)
    path = tmp_path / "huge.jpg"
    big.save(path, "JPEG", quality=85)
    del big
    assert MAX_DECODE_PIXELS < 8100 * 8100
    with Image.open(path) as opened:
        assert _prepare_decode(opened) and opened.size == (2025, 2025)
    scan = matcher.scan_path(path)
    assert scan.pdq_skipped is None
    assert [m.label for m in scan.matches] == [f"synthetic image {BANKED[1]}"]


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming width×height grey pixels, then four rows of data (a
    62 KB file can hold 8000×8000 zeros; this is the same header, smaller)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes(width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def gif_claiming(width: int, height: int) -> bytes:
    """A GIF whose first frame claims width×height (Pillow allocates a frame that size
    while opening, before anything here sees it: its own limit must stop it)."""
    screen = struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    control = b"!\xf9\x04\x08\x00\x00\x00\x00"  # dispose to background
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00;"
    return b"GIF89a" + screen + control + frame


def jpeg_claiming(width: int, height: int, subsampling: int) -> bytes:
    """A small baseline JPEG whose frame header claims width×height."""
    data = encode(Image.new("RGB", (64, 64), (90, 120, 150)), "JPEG", subsampling=subsampling)
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9 :]


@pytest.mark.parametrize(
    "data",
    [
        png_claiming(8000, 8000),  # 64 MP of PNG: no reduced decoding, over 40 MP
        png_claiming(6400, 6300),  # 40.3 MP
        gif_claiming(65535, 65535),  # Pillow's DecompressionBombError, while opening
        jpeg_claiming(8100, 8100, subsampling=0),  # 4:4:4: 394 MB of coefficients
        jpeg_claiming(65535, 65535, subsampling=2),
    ],
    ids=["png_64mp", "png_40.3mp", "gif_4gp", "jpeg_444_66mp", "jpeg_4gp"],
)
def test_images_too_large_to_decode_are_refused_unread_and_said_so(matcher, data):
    """Refused from the header, before any pixel is decoded, as ``too_large_to_decode``:
    an image nobody checked, which the relay holds for review rather than passing."""
    assert pdq_of(data).skipped == "too_large_to_decode"
    scan = matcher.scan_bytes(data)
    assert scan.pdq_skipped == "too_large_to_decode" and scan.matches == ()
    assert set(scan.hashes) == {"sha256", "md5"}


def test_images_within_the_limits_are_decoded():
    # Just under 40 MP of PNG; a 66 MP 4:2:0 JPEG (decoded at 1/4 scale; 197 MB of
    # coefficients if progressive, under the 256 MiB limit).
    for data in (png_claiming(6300, 6300), jpeg_claiming(8100, 8100, subsampling=2)):
        assert pdq_of(data).skipped is None


def test_only_common_image_formats_are_opened(matcher, images):
    Image.init()
    assert set(PDQ_FORMATS) <= set(Image.ID)
    image = images[BANKED[3]]
    label = [f"synthetic image {BANKED[3]}"]
    for fmt in PDQ_FORMATS:
        if fmt == "AVIF" and not features.check("avif"):
            continue
        assert [m.label for m in matcher.match_bytes(encode(image, fmt))] == label, fmt
    # Formats Pillow could decode but the matcher doesn't open: exact hashes only.
    for fmt in ("PPM", "TGA", "ICO", "PCX"):
        scan = matcher.scan_bytes(encode(image, fmt))
        assert scan.pdq_skipped == "not_an_image" and scan.matches == (), fmt


def test_sixteen_bit_grey_matches_as_a_viewer_shows_it(matcher, images):
    """A 16-bit grey PNG is shown scaled to 8 bits; Pillow's own conversion would clip
    it to white (quality 0, never looked up)."""
    grey = np.asarray(images[BANKED[0]].convert("L")).astype(np.uint16) * 257
    data = encode(Image.fromarray(grey))
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    assert [m.label for m in matcher.match_bytes(data)] == [f"synthetic image {BANKED[0]}"]


def test_reducing_in_strips_gives_the_pixels_of_reducing_at_once(images):
    """An image whose mode needs converting is converted a strip at a time: the same
    pixels as converting it whole, without a second full-size copy."""
    palette = images[BANKED[0]].resize((2300, 3500)).convert("P", palette=Image.Palette.ADAPTIVE)
    reduced = _for_pdq(palette)
    expected = palette.convert("RGB").reduce((2, 3))
    assert reduced.mode == "RGB" and reduced.size == expected.size == (1150, 1167)
    assert np.array_equal(np.asarray(reduced), np.asarray(expected))
    assert all(PDQ_SIDE <= side < 2 * PDQ_SIDE for side in reduced.size)


def test_counts_and_an_empty_matcher(tmp_path, bank_root, matcher):
    assert matcher.counts() == {"test_images": {"pdq": len(BANKED), "sha256": 0, "md5": 0}}
    assert bank_counts(bank_root) == matcher.counts()
    missing = HashMatcher.load(tmp_path / "no-banks", HashMatching())
    assert missing.counts() == {}
    assert missing.match_bytes(b"anything") == []
    assert HashMatcher.empty().match_bytes(b"anything") == []


def test_duplicate_lines_count_once_and_the_first_label_wins(tmp_path):
    sha = "ab" * 32
    write_bank(tmp_path, "dups", "sha256", f"{sha} first", f"{sha} second", sha.upper())
    matcher = HashMatcher.load(tmp_path, HashMatching())
    assert matcher.counts()["dups"]["sha256"] == 1
    assert matcher._scan({"sha256": sha, "md5": "0" * 32}, pdq_of(b"x")).matches == (
        Match("dups", "sha256", 0, sha, "first", None),
    )


@pytest.mark.parametrize(
    ("signal", "line", "complaint"),
    [
        ("pdq", "abc", "a pdq hash is 64 hex digits"),
        ("pdq", "g" * 64, "a pdq hash is 64 hex digits"),
        ("sha256", "0" * 63, "a sha256 hash is 64 hex digits"),
        ("md5", "0" * 64, "a md5 hash is 32 hex digits"),
        ("md5", "0" * 32 + "\tlabel", "a md5 hash is 32 hex digits"),
        ("md5", "0" * 32 + " bad\x1blabel", "control characters"),
        ("md5", "0" * 32 + " " + "x" * 201, "at most 200 characters"),
    ],
)
def test_a_malformed_line_is_named_by_file_and_line(tmp_path, signal, line, complaint):
    path = write_bank(tmp_path, "broken", signal, "# header", "f" * {"md5": 32}.get(signal, 64))
    write_bank(tmp_path, "broken", signal, line)
    with pytest.raises(BankError) as caught:
        HashMatcher.load(tmp_path, HashMatching())
    message = str(caught.value)
    assert f"{path} line 3:" in message and complaint in message
    with pytest.raises(BankError, match="line 3"):
        bank_counts(tmp_path)


def test_non_utf8_lines_bad_bank_names_and_unknown_signal_files_are_errors(tmp_path):
    (tmp_path / "b1").mkdir()
    (tmp_path / "b1" / "md5.txt").write_bytes(b"\xff\xfe\n")
    with pytest.raises(BankError, match=r"md5.txt line 1: not UTF-8"):
        HashMatcher.load(tmp_path, HashMatching())
    (tmp_path / "b1" / "md5.txt").unlink()
    (tmp_path / "b1" / "sha1.txt").write_text("")
    with pytest.raises(BankError, match="not a signal file"):
        HashMatcher.load(tmp_path, HashMatching())
    (tmp_path / "b1" / "sha1.txt").unlink()
    (tmp_path / "Bad-Name").mkdir()
    with pytest.raises(BankError, match="not a bank name"):
        HashMatcher.load(tmp_path, HashMatching())
    (tmp_path / "Bad-Name").rmdir()
    (tmp_path / ".hidden").mkdir()  # hidden entries and other files are ignored
    (tmp_path / "b1" / "README").write_text("notes")
    assert HashMatcher.load(tmp_path, HashMatching()).counts() == {
        "b1": {"pdq": 0, "sha256": 0, "md5": 0}
    }


def test_the_fingerprint_changes_when_a_bank_does(tmp_path):
    write_bank(tmp_path, "one", "md5", "0" * 32)
    matcher = HashMatcher.load(tmp_path, HashMatching())
    assert banks_fingerprint(tmp_path) == matcher.fingerprint
    write_bank(tmp_path, "one", "md5", "1" * 32)
    assert banks_fingerprint(tmp_path) != matcher.fingerprint


def test_concurrent_lookups_from_threads_agree(matcher, images):
    inputs = [fn(images[seed]) for seed in BANKED for fn in COPIES.values()]
    inputs += [encode(images[seed]) for seed in UNRELATED[:4]]
    expected = [matcher.match_bytes(data) for data in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(matcher.match_bytes, inputs * 3))
    assert got == expected * 3
