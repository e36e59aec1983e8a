"""Reading texts from a user's file: one per line, or JSONL; errors name the file and line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import InvalidInput

__all__ = ["read_texts"]


def read_texts(path: str, option: str, *, keep_blank: bool = True) -> list[str]:
    """Texts from ``path`` ('-' for stdin): a JSON string or ``{"text": ...}`` per line for .jsonl,
    else one text per line. ``option`` names the flag in error messages (``--input``)."""
    try:
        raw = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {option} {path}: {getattr(exc, 'strerror', None) or exc}") from None
    lines = raw.splitlines()
    if not path.endswith(".jsonl"):
        return lines if keep_blank else [line for line in lines if line.strip()]
    texts = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path} line {n}: not JSON ({exc.msg})") from None
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            item = item["text"]
        if not isinstance(item, str):
            raise InvalidInput(f"{path} line {n}: expected a JSON string or an object with a \"text\" string")
        texts.append(item)
    return texts
