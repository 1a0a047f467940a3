"""Registry records: one typed class per family, validated once, on reading and on writing.

A record is the JSON object of one registered method (DESIGN.md, "Contracts between layers"):
name, family, stages or steps, nodes or step ratios, exact coefficient expressions, verdicts,
orders in both settings, provenance and a content hash (SHA-256 of the canonical JSON without
the ``hash`` field). The classes are ``dict`` subclasses, so a record is written byte for byte
as the plain object it always was; what they add is the schema of their family
(:attr:`Record.FIELDS`, checked by :meth:`Record.validate`), the hash (:meth:`Record.sealed`,
:meth:`Record.verify_hash`), reading (:func:`read_record`) and writing (:meth:`Record.save`).

Like diffrax's ``ButcherTableau`` (validated once in ``__post_init__``), a record is checked
where it is made or read, not in every caller: a field of the wrong type or shape is an
InputError naming the record and the field, never a KeyError deep in code generation.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from phiforge.derive.errors import InputError

__all__ = [
    "FAMILIES",
    "FORMAT_VERSION",
    "MultistepRecord",
    "Record",
    "SingleStepRecord",
    "StochasticRecord",
    "content_hash",
    "read_record",
    "typed_record",
]

FORMAT_VERSION = 1

_COMMON: dict[str, Any] = {
    "format": int,
    "name": str,
    "family": str,
    "description": str,
    "coefficients": dict,
    "orders": dict,
    "nfe_per_step": int,
    "convergence_order": int,
    "provenance": dict,
}
_OPTIONAL: dict[str, Any] = {"prediction": (str, type(None)), "hash": str}


def content_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, ASCII) of ``record`` less its
    ``hash`` field."""
    body = {key: value for key, value in record.items() if key != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()


class Record(dict):
    """A registry record of one family. ``FIELDS`` maps required fields to their JSON types,
    ``OPTIONAL`` the optional ones; :meth:`_check_family` adds the family's shape rules."""

    FAMILY: ClassVar[str] = ""
    FIELDS: ClassVar[dict[str, Any]] = {}
    OPTIONAL: ClassVar[dict[str, Any]] = {}

    def __init__(self, data: Mapping[str, Any], source: str | Path | None = None) -> None:
        super().__init__(data)
        self.validate(source)

    # ------------------------------------------------------------------ validation
    def _where(self, source: str | Path | None) -> str:
        return f"registry record {source}" if source else f"registry record {self.get('name')!r}"

    def validate(self, source: str | Path | None = None) -> None:
        """Every required field present with its type, optional ones typed, the family's own
        rules; an InputError naming the record and the field otherwise."""
        where = self._where(source)
        if self.get("family") != self.FAMILY:
            raise InputError(f"{where}: family {self.get('family')!r} is not {self.FAMILY!r}")
        required = _COMMON | self.FIELDS
        missing = [key for key in required if key not in self]
        if missing:
            raise InputError(f"{where}: missing field(s) {', '.join(missing)}")
        for key, kind in (required | _OPTIONAL | self.OPTIONAL).items():
            if key in self and not _is(self[key], kind):
                raise InputError(
                    f"{where}: field {key!r} must be {_kind_name(kind)}, got "
                    f"{type(self[key]).__name__}"
                )
        if self["format"] != FORMAT_VERSION:
            raise InputError(
                f"{where}: format {self['format']!r}, this version reads {FORMAT_VERSION}"
            )
        if self["nfe_per_step"] < 1:
            raise InputError(f"{where}: field 'nfe_per_step' must be >= 1")
        self._check_family(where)

    def _check_family(self, where: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_table(self, where: str, key: str, names: list[str]) -> None:
        """``coefficients[key]`` maps exactly ``names`` (or a subset, for sparse tables: a
        missing entry is 0) to expression strings."""
        table = self["coefficients"].get(key)
        if not isinstance(table, dict):
            raise InputError(f"{where}: field 'coefficients.{key}' must be an object")
        unknown = sorted(set(table) - set(names))
        if unknown:
            allowed = f"{names[0]}..{names[-1]}" if names else "none"
            raise InputError(
                f"{where}: field 'coefficients.{key}' has entries {unknown} (allowed: {allowed})"
            )
        wrong = [k for k, v in table.items() if not isinstance(v, str)]
        if wrong:
            raise InputError(f"{where}: 'coefficients.{key}' entries {wrong} must be strings")

    def _check_tableau(self, where: str) -> None:
        """A Runge-Kutta record's nodes (one per stage) and its a (i > j) and b tables."""
        s = self["stages"]
        _check_nodes(self, where)
        self._check_table(where, "a", [f"{i},{j}" for i in range(2, s + 1) for j in range(1, i)])
        self._check_table(where, "b", [str(i) for i in range(1, s + 1)])

    # ------------------------------------------------------------------ fields
    @property
    def name(self) -> str:
        return self["name"]

    @property
    def family(self) -> str:
        return self["family"]

    @property
    def description(self) -> str:
        return self["description"]

    @property
    def coefficients(self) -> dict[str, Any]:
        """The exact coefficient tables (expression strings), by table name."""
        return self["coefficients"]

    @property
    def orders(self) -> dict[str, dict[str, int]]:
        """Orders by setting ("scalar", "operator") and kind ("stiff", "nonstiff", ...)."""
        return self["orders"]

    @property
    def nfe_per_step(self) -> int:
        return self["nfe_per_step"]

    @property
    def convergence_order(self) -> int:
        return self["convergence_order"]

    @property
    def provenance(self) -> dict[str, Any]:
        return self["provenance"]

    @property
    def prediction(self) -> str | None:
        """The parametrisation the method was derived for ("data", "noise"), or None: any."""
        return self.get("prediction")

    @property
    def hash(self) -> str | None:
        """The stored content hash (None before :meth:`sealed`)."""
        return self.get("hash")

    @property
    def domain(self) -> str | None:
        """Where in z the coefficients' pivots do not vanish (None: everywhere)."""
        return self.get("domain")

    @property
    def stages(self) -> int | None:
        """Model evaluations per step of a Runge-Kutta record (None for a multistep one)."""
        return self.get("stages")

    @property
    def steps(self) -> int | None:
        """Past values of a multistep record (None for a Runge-Kutta one)."""
        return self.get("steps")

    # ------------------------------------------------------------------ hash, read, write

    def sealed(self) -> Record:
        """The record with its content hash set (a record is sealed when it is made)."""
        self["hash"] = content_hash(self)
        return self

    def verify_hash(self, source: str | Path | None = None) -> None:
        _verify_hash(self, self._where(source))

    def save(self, directory: str | Path) -> Path:
        """Write ``directory/NAME.json`` (the folder is created if missing), validated and with
        its hash checked first."""
        from phiforge.derive.registry_folders import check_method_name

        check_method_name(self.get("name"), "name")
        self.validate()
        self.verify_hash()
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise InputError(f"parameter 'registry': cannot create {directory} ({error})") from None
        path = directory / f"{self.name}.json"
        path.write_text(
            json.dumps(self, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return path


class SingleStepRecord(Record):
    """An exponential Runge-Kutta method: ``stages`` nodes and the coefficients a_ij, b_i as
    expressions in phi(k, c*z); a straight-line record adds its ``definitions`` (the names the
    coefficients refer to) and the ``domain`` of z where its pivots do not vanish."""

    FAMILY = "singlestep"
    FIELDS: ClassVar[dict[str, Any]] = {"stages": int, "nodes": list, "conditions": dict}
    OPTIONAL: ClassVar[dict[str, Any]] = {"embedded": dict, "definitions": list, "domain": str}

    @property
    def nodes(self) -> list[str]:
        return self["nodes"]

    @property
    def definitions(self) -> list[dict[str, Any]]:
        """A straight-line record's named definitions (empty for any other)."""
        return self.get("definitions", [])

    @property
    def embedded(self) -> dict[str, Any] | None:
        return self.get("embedded")

    def _check_family(self, where: str) -> None:
        self._check_tableau(where)
        stages = self["stages"]
        if self["nfe_per_step"] != stages:
            raise InputError(f"{where}: field 'nfe_per_step' must equal 'stages' ({stages})")
        for setting in ("scalar", "operator"):
            _check_orders(self["orders"], setting, where)


class MultistepRecord(Record):
    """An exponential Adams-type method for variable steps: ``steps`` past values, the step
    ratio symbols, weights ``coefficients.beta`` (0..steps-1) and, for a predict-evaluate-correct
    pair, the corrector's ``coefficients.gamma`` (0: the new point, 1..steps the past values);
    a stochastic Adams method adds the exact ``noise`` variances."""

    FAMILY = "multistep"
    FIELDS: ClassVar[dict[str, Any]] = {"steps": int, "ratios": list, "conditions": dict}
    OPTIONAL: ClassVar[dict[str, Any]] = {
        "warmup": dict,
        "noise": dict,
        "predictor_orders": dict,
        "corrector_orders": dict,
    }

    @property
    def ratios(self) -> list[str]:
        return self["ratios"]

    @property
    def warmup(self) -> dict[str, list[str]]:
        """Lower-order starters by name (empty when the method needs none)."""
        return self.get("warmup", {})

    @property
    def noise(self) -> dict[str, Any] | None:
        """A stochastic Adams method's exact noise (None for a deterministic one)."""
        return self.get("noise")

    @property
    def predictor_orders(self) -> dict[str, Any] | None:
        return self.get("predictor_orders")

    @property
    def corrector_orders(self) -> dict[str, Any] | None:
        return self.get("corrector_orders")

    def _check_family(self, where: str) -> None:
        k = self["steps"]
        if k < 1:
            raise InputError(f"{where}: field 'steps' must be >= 1")
        if len(self["ratios"]) != k - 1 or not all(isinstance(r, str) for r in self["ratios"]):
            raise InputError(f"{where}: field 'ratios' must list {k - 1} symbol names")
        self._check_table(where, "beta", [str(m) for m in range(k)])
        if len(self["coefficients"]["beta"]) != k:
            raise InputError(f"{where}: field 'coefficients.beta' needs {k} weights")
        if "gamma" in self["coefficients"]:
            self._check_table(where, "gamma", [str(m) for m in range(k + 1)])
        for setting in ("scalar", "operator"):
            _check_orders(self["orders"], setting, where)


class StochasticRecord(Record):
    """A SEEDS method: a drift tableau whose nodes may be parameters (``parameters``: their
    defaults) and the exact stage ``noise`` (weights and covariances in both forms)."""

    FAMILY = "stochastic"
    FIELDS: ClassVar[dict[str, Any]] = {
        "stages": int,
        "nodes": list,
        "parameters": dict,
        "noise": dict,
    }

    @property
    def nodes(self) -> list[str]:
        return self["nodes"]

    @property
    def parameters(self) -> dict[str, str]:
        """The node parameters and their default values."""
        return self["parameters"]

    @property
    def noise(self) -> dict[str, Any]:
        """The exact stage noise: its nodes, weights and covariances in both forms."""
        return self["noise"]

    def _check_family(self, where: str) -> None:
        self._check_tableau(where)
        _check_orders(self["orders"], "scalar", where)
        if "nodes" not in self["noise"]:
            raise InputError(f"{where}: field 'noise' must give the noise 'nodes'")


RECORD_CLASSES: dict[str, type[Record]] = {
    cls.FAMILY: cls for cls in (SingleStepRecord, MultistepRecord, StochasticRecord)
}
#: the method families, of records and of catalogue entries alike
FAMILIES = tuple(RECORD_CLASSES)


def typed_record(data: Mapping[str, Any], source: str | Path | None = None) -> Record:
    """``data`` as the record class of its family, validated."""
    if not isinstance(data, Mapping):
        raise InputError(f"registry record {source}: not a JSON object")
    family = data.get("family")
    if family not in RECORD_CLASSES:
        where = f"registry record {source}" if source else "registry record"
        raise InputError(f"{where}: unknown family {family!r} (one of {', '.join(RECORD_CLASSES)})")
    if isinstance(data, RECORD_CLASSES[family]):
        data.validate(source)
        return data
    return RECORD_CLASSES[family](data, source)


def read_record(path: str | Path) -> Record:
    """The record at ``path``: valid JSON, its hash matching its content, its family's schema,
    and its file named after it."""
    if not isinstance(path, str | os.PathLike):
        raise InputError(f"parameter 'path' must be a file path, got {path!r}")
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"registry record {path} is not valid JSON: {error}") from None
    except OSError as error:
        raise InputError(f"registry record {path} cannot be read: {error}") from None
    if not isinstance(data, dict):
        raise InputError(f"registry record {path} is not a JSON object")
    _verify_hash(data, f"registry record {path}")  # before the schema: an edit is named so
    record = typed_record(data, path)
    if record.get("name") != path.stem:
        raise InputError(
            f"registry record {path}: the file's name {path.stem!r} differs from the record's "
            f"name {record.get('name')!r}; rename the file to {record.get('name')}.json"
        )
    return record


def _verify_hash(data: Mapping[str, Any], where: str) -> None:
    stored, actual = data.get("hash"), content_hash(data)
    if stored != actual:
        raise InputError(
            f"{where} was edited by hand: its hash {stored} does not match its content "
            f"({actual}); regenerate it with 'phiforge registry build' or 'phiforge derive ...' "
            "instead of editing"
        )


def _check_nodes(record: Record, where: str) -> None:
    nodes = record["nodes"]
    if len(nodes) != record["stages"] or not all(isinstance(c, str) for c in nodes):
        raise InputError(f"{where}: field 'nodes' must list {record['stages']} expressions")


def _check_orders(orders: Mapping[str, Any], setting: str, where: str) -> None:
    table = orders.get(setting)
    if not isinstance(table, dict) or not all(isinstance(v, int) for v in table.values()):
        raise InputError(f"{where}: field 'orders.{setting}' must map order names to integers")
    for key in ("stiff", "nonstiff", "classical"):
        if key not in table:
            raise InputError(f"{where}: field 'orders.{setting}' lacks {key!r}")


def _is(value: Any, kind: Any) -> bool:
    if kind is int:  # JSON integers; a bool is not one
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _kind_name(kind: Any) -> str:
    names = {int: "an integer", str: "a string", list: "a list", dict: "an object"}
    if isinstance(kind, tuple):
        return " or ".join("null" if k is type(None) else names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)
