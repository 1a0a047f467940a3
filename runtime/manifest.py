"""Content hashes of JSON files the runtime writes (network manifests, fitted solvers).

A file carries ``"hash": "sha256:<hex>"`` of its own canonical JSON (sorted keys, no spaces,
ASCII) without the ``hash`` field; a reader recomputes it and refuses a file edited by hand.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from phiforge.runtime.errors import InputError

__all__ = ["canonical_json", "content_hash", "read_document"]


def canonical_json(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``document`` less its ``hash`` field."""
    body = {key: value for key, value in document.items() if key != "hash"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def read_document(path: str | Path, kind: str, format_version: int) -> dict[str, Any]:
    """The JSON document at ``path``, refused (InputError) when missing, of another format
    version, or edited by hand (content hash mismatch); ``kind`` names it in messages."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"parameter 'path': no {kind} at {path}")
    document = json.loads(path.read_text())
    if document.get("format") != format_version:
        raise InputError(
            f"{path}: format {document.get('format')!r}, this version reads {format_version}"
        )
    if document.get("hash") != content_hash(document):
        raise InputError(f"{path} was edited by hand: its content hash does not match")
    return document
