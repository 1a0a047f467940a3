"""Content hashes of JSON files the runtime writes (network manifests, the shipped mixture,
fitted solvers).

A file carries ``"hash": "sha256:<hex>"`` of its own canonical JSON (sorted keys, no spaces,
ASCII) without the ``hash`` field; a reader recomputes it and refuses a file edited by hand.
Tensors travel beside it as ``NAME.bin`` (little-endian, in the order of the document's
``tensors`` table of names and shapes) whose SHA-256 the document holds as ``weights_sha256``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from phiforge.runtime.errors import InputError

__all__ = [
    "canonical_json",
    "check_file_stem",
    "check_path",
    "content_hash",
    "module_arrays",
    "read_document",
    "read_tensors",
    "weights_dir",
    "write_tensors",
    "write_text",
]


def weights_dir() -> Path:
    """The shipped data files: network weights and the digits mixture (``runtime/weights``)."""
    return Path(str(resources.files("phiforge.runtime").joinpath("weights")))


def canonical_json(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``document`` less its ``hash`` field."""
    body = {key: value for key, value in document.items() if key != "hash"}
    return "sha256:" + hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def check_file_stem(name: Any, parameter: str = "name") -> str:
    """``name`` if it can stand before ``.json`` and ``.bin`` in the folder written to: letters,
    digits, '_', '-' and '.', not first a '.' or '-', no folder, no suffix of its own."""
    if (
        not isinstance(name, str)
        or not _STEM.fullmatch(name)
        or name.lower().endswith((".json", ".bin"))
    ):
        raise InputError(
            f"parameter {parameter!r} must be a file stem (letters, digits, '_', '-', '.'; no "
            f"folder, no .json or .bin; 1 to 200 characters), got {name!r}"
        )
    return name


def check_path(path: Any, kind: str, parameter: str = "path") -> Path:
    """``path`` as a Path if it is a non-empty str or os.PathLike (``kind`` names the file in
    the message)."""
    if not isinstance(path, str | os.PathLike) or str(path) == "":
        what = kind if kind == "folder" else f"{kind} file"
        raise InputError(f"parameter {parameter!r} must be the path of a {what}, got {path!r}")
    return Path(path)


def read_document(
    path: str | Path,
    kind: str,
    format_version: int,
    required: Sequence[str] = (),
    model: str | None = None,
) -> dict[str, Any]:
    """The JSON document at ``path``, refused (InputError) when missing, not JSON, of another
    kind (a field of ``required`` missing, or a ``model`` field naming another model than
    ``model``), of another format version, or edited by hand (content hash mismatch); ``kind``
    names it in messages."""
    path = check_path(path, kind)
    if not path.is_file():
        raise InputError(f"parameter 'path': no {kind} at {path}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path} is not a {kind}: not valid JSON ({error})") from None
    except OSError as error:
        raise InputError(f"parameter 'path': {path} cannot be read ({error})") from None
    if not isinstance(document, dict):
        raise InputError(f"{path} is not a {kind}: not a JSON object")
    missing = [key for key in ("format", "hash", *required) if key not in document]
    if missing:
        raise InputError(f"{path} is not a {kind}: it lacks the field(s) {', '.join(missing)}")
    if model is not None and document.get("model", model) != model:
        raise InputError(f"{path} is not a {kind}: it holds a {document['model']!r} model")
    if type(document.get("format")) is not int or document["format"] != format_version:
        raise InputError(
            f"{path}: format {document.get('format')!r}, this version reads {format_version}"
        )
    if document.get("hash") != content_hash(document):
        raise InputError(f"{path} was edited by hand: its content hash does not match")
    return document


def module_arrays(module: Any) -> dict[str, np.ndarray]:
    """A torch module's state as float32 NumPy arrays, in its order (for :func:`write_tensors`)."""
    import torch

    return {
        key: value.detach().to("cpu", torch.float32).numpy()
        for key, value in module.state_dict().items()
    }


def write_tensors(
    directory: str | Path,
    name: str,
    document: dict[str, Any],
    arrays: dict[str, np.ndarray],
    element: str = "<f4",
) -> tuple[Path, Path]:
    """Write ``NAME.bin`` (``arrays`` as ``element``, in their order) and ``NAME.json``
    (``document`` with the tensor table, the SHA-256 of the .bin and the content hash added);
    returns both paths."""
    check_file_stem(name)
    directory = check_path(directory, "folder", "directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(f"parameter 'directory': cannot create {directory} ({error})") from None
    tensors, chunks = [], []
    for key, value in arrays.items():
        array = np.ascontiguousarray(value).astype(element)
        tensors.append({"name": key, "shape": list(array.shape)})
        chunks.append(array.tobytes())
    payload = b"".join(chunks)
    document = dict(document, tensors=tensors, weights_sha256=hashlib.sha256(payload).hexdigest())
    document["hash"] = content_hash(document)
    bin_path, json_path = directory / f"{name}.bin", directory / f"{name}.json"
    write_text(bin_path, payload, "directory")
    write_text(json_path, json.dumps(document, indent=1, sort_keys=True) + "\n", "directory")
    return bin_path, json_path


def write_text(path: Path, content: str | bytes, parameter: str = "path") -> Path:
    """Write ``content`` (text, or bytes) to ``path``; an OS refusal (a folder in the way, no
    permission, a missing folder) is an InputError naming ``parameter``."""
    try:
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    except OSError as error:
        raise InputError(f"parameter {parameter!r}: cannot write {path} ({error})") from None
    return path


def read_tensors(
    json_path: str | Path,
    kind: str,
    format_version: int,
    element: str = "<f4",
    required: Sequence[str] = (),
    names: Sequence[str] | None = None,
    model: str | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The document written by :func:`write_tensors` and its arrays (writable copies), refused
    (InputError) when either file was edited: content hash or SHA-256 mismatch, or a tensor
    table that does not cover the .bin exactly; or when it is another kind of file (fields
    ``required`` missing, a ``model`` other than ``model``, or tensors other than ``names``)."""
    json_path = check_path(json_path, kind)
    document = read_document(
        json_path, kind, format_version, ("tensors", "weights_sha256", *required), model
    )
    table = document["tensors"]
    if not (
        isinstance(table, list)
        and all(
            isinstance(e, dict)
            and isinstance(e.get("name"), str)
            and isinstance(e.get("shape"), list)
            and all(type(n) is int and n >= 0 for n in e["shape"])
            for e in table
        )
    ):
        raise InputError(
            f"{json_path} is not a {kind}: 'tensors' must list each tensor's name and shape"
        )
    if names is not None and sorted(e.get("name") for e in table) != sorted(names):
        raise InputError(
            f"{json_path} is not a {kind}: its tensors are "
            f"{', '.join(str(e.get('name')) for e in table)}, expected {', '.join(names)}"
        )
    bin_path = json_path.with_suffix(".bin")
    if not bin_path.is_file():
        raise InputError(f"{kind} {json_path}: its weights file {bin_path} is missing")
    try:
        payload = bin_path.read_bytes()
    except OSError as error:
        raise InputError(f"{kind} {json_path}: {bin_path} cannot be read ({error})") from None
    if hashlib.sha256(payload).hexdigest() != document["weights_sha256"]:
        raise InputError(f"{bin_path} does not match its manifest (SHA-256 mismatch)")
    size = np.dtype(element).itemsize
    counts = [int(np.prod(entry["shape"], dtype=np.int64)) for entry in table]
    if size * sum(counts) != len(payload):
        raise InputError(f"{json_path}: tensor table does not cover the weights file")
    arrays, offset = {}, 0
    for entry in table:
        count = int(np.prod(entry["shape"], dtype=np.int64))
        array = np.frombuffer(payload, dtype=element, count=count, offset=size * offset)
        arrays[entry["name"]] = array.reshape(entry["shape"]).copy()
        offset += count
    if size * offset != len(payload):
        raise InputError(f"{json_path}: tensor table does not cover the weights file")
    return document, arrays
