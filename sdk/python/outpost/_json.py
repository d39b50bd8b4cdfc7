"""JSON text of documents read from YAML, numbers as they were written.

The standard encoder writes a float as its shortest repr (``1e3`` becomes
``1000.0``); the CLI sends a number as the file wrote it, and a job's input
literal reaches its command as that text, so the SDK writes it the same way.
"""

from __future__ import annotations

import json
import math
from typing import Any, List

__all__ = ["dumps"]


def dumps(value: Any) -> str:
    """Compact JSON of value; numbers read from YAML keep their written text."""
    out: List[str] = []
    _write(value, out, 0)
    return "".join(out)


def _write(v: Any, out: List[str], depth: int) -> None:
    if depth > 1000:
        raise ValueError("a document nested more than 1000 levels deep")
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, str):
        out.append(json.dumps(v, ensure_ascii=False))
    elif isinstance(v, (int, float)):
        text = getattr(v, "json_text", None)
        if text is None:
            if isinstance(v, float) and (math.isinf(v) or math.isnan(v)):
                raise ValueError(f"{v} is not a number JSON can hold")
            text = repr(int(v)) if isinstance(v, int) else repr(float(v))
        out.append(text)
    elif isinstance(v, dict):
        out.append("{")
        for i, (k, item) in enumerate(v.items()):
            if not isinstance(k, str):
                raise ValueError(f"key {k!r} is not a string")
            if i:
                out.append(",")
            out.append(json.dumps(k, ensure_ascii=False))
            out.append(":")
            _write(item, out, depth + 1)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise ValueError(f"a {type(v).__name__} cannot be written as JSON")
