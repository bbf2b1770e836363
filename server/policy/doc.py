"""The presets side by side, as the Markdown table in docs/POLICY.md.

``python -m server.policy.doc`` rewrites the table between its markers; a test checks that
the committed document matches the presets, so the doc can't drift from what runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from server.policy.loader import PRESET_NAMES, load_policy

DOC = Path(__file__).resolve().parents[2] / "docs" / "POLICY.md"
BEGIN, END = "<!-- presets:begin -->", "<!-- presets:end -->"


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: value}


def _cell(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"`{value}`" if isinstance(value, str) else str(value)


def preset_table() -> str:
    presets = {name: _flatten(msgspec.to_builtins(load_policy(name))) for name in PRESET_NAMES}
    keys = [k for k in presets["default"] if k not in ("name", "description")]
    lines = [
        "| rule | " + " | ".join(PRESET_NAMES) + " |",
        "|---|" + "---|" * len(PRESET_NAMES),
    ]
    for key in keys:
        cells = " | ".join(_cell(presets[name][key]) for name in PRESET_NAMES)
        lines.append(f"| `{key}` | {cells} |")
    return "\n".join(lines)


def render(document: str) -> str:
    head, _, rest = document.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{preset_table()}\n{END}{tail}"


def main() -> None:
    DOC.write_text(render(DOC.read_text()))
    print(f"updated the presets table in {DOC}", file=sys.stderr)


if __name__ == "__main__":
    main()
