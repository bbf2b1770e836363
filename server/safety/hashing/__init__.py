"""Known-material hash matching (issue 13, NCMEC principle 2): banks of hashes on disk,
loaded once into a :class:`HashMatcher` that the relay asks about every attachment it can
read (``visible`` conversations). Signal types: PDQ for images (Meta's perceptual hash,
via ``threatexchange``/``pdqhash``), exact SHA-256 and MD5 for every file. Thresholds come
from the policy's ``[hash_matching]`` table (docs/POLICY.md "Hash matching").

    from server.safety.hashing import HashMatcher, banks_dir
    matcher = HashMatcher.load(banks_dir(config.data_dir), policy.hash_matching)
    scan = await asyncio.to_thread(matcher.scan_path, blob)  # or match_path / match_bytes

Bank files: server/safety/hashing/banks.py. Admin commands: server/admin/bank_commands.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from server.safety.hashing.banks import BANK_NAME, BankError, banks_dir
from server.safety.hashing.signals import SIGNALS, Signal

if TYPE_CHECKING:
    from server.safety.hashing.hashes import hash_file
    from server.safety.hashing.matcher import HashMatcher, Match, Scan, banks_fingerprint

#: Imported on first use: numpy, Pillow, pdqhash and faiss take ~0.1 s, which every
#: `agechat` command would pay at start otherwise.
_LAZY = {
    "hash_file": "server.safety.hashing.hashes",
    "HashMatcher": "server.safety.hashing.matcher",
    "Match": "server.safety.hashing.matcher",
    "Scan": "server.safety.hashing.matcher",
    "banks_fingerprint": "server.safety.hashing.matcher",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BANK_NAME",
    "SIGNALS",
    "BankError",
    "HashMatcher",
    "Match",
    "Scan",
    "Signal",
    "banks_dir",
    "banks_fingerprint",
    "hash_file",
]
