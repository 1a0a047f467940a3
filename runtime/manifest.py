"""Content hashes of JSON files the runtime writes (network manifests, fitted solvers).

A file carries ``"hash": "sha256:<hex>"`` of its own canonical JSON (sorted keys, no spaces,
ASCII) without the ``hash`` field; a reader recomputes it and refuses a file edited by hand.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["canonical_json", "content_hash"]


def canonical_json(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``document`` less its ``hash`` field."""
    body = {key: value for key, value in document.items() if key != "hash"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()
