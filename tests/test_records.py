"""Typed registry records: one class per family validates a record on reading and on writing,
and names the field that is wrong."""

import json

import pytest

from phiforge.derive.errors import InputError
from phiforge.derive.records import (
    MultistepRecord,
    SingleStepRecord,
    StochasticRecord,
    content_hash,
    read_record,
    typed_record,
)
from phiforge.derive.registry import default_registry_dir, list_records, load_record


def _resealed(record: dict, **changes) -> dict:
    data = json.loads(json.dumps(record)) | changes
    data["hash"] = content_hash(data)
    return data


def test_every_shipped_record_reads_as_its_family_class():
    classes = {"singlestep": SingleStepRecord, "multistep": MultistepRecord}
    classes["stochastic"] = StochasticRecord
    records = list_records()
    assert len(records) >= 30
    for record in records:
        assert type(record) is classes[record["family"]], record.name
    assert {r["family"] for r in records} == set(classes)


def test_a_record_writes_byte_for_byte(tmp_path):
    for name in ("res_2s", "res_3m_pc", "seeds_2a", "res_5s"):
        original = (default_registry_dir() / f"{name}.json").read_bytes()
        path = load_record(name).save(tmp_path)
        assert path.read_bytes() == original, name


@pytest.mark.parametrize(
    ("name", "changes", "fragment"),
    [
        ("res_2s", {"stages": "2"}, "field 'stages' must be an integer"),
        ("res_2s", {"stages": 3}, "'nodes' must list 3"),
        ("res_2s", {"nfe_per_step": 3}, "'nfe_per_step' must equal 'stages'"),
        ("res_2s", {"nodes": ["0", 0.5]}, "'nodes' must list 2"),
        ("res_2s", {"coefficients": {"a": {"3,1": "0"}, "b": {}}}, "'coefficients.a'"),
        ("res_2s", {"orders": {"scalar": {}}}, "'orders.scalar' lacks"),
        ("res_2s", {"format": 2}, "format 2"),
        ("res_2s", {"convergence_order": True}, "'convergence_order' must be an integer"),
        ("res_3m", {"ratios": ["r1"]}, "'ratios' must list 2"),
        ("res_3m", {"coefficients": {"beta": {"0": "phi(1, z)"}}}, "needs 3 weights"),
        ("res_3m_pc", {"steps": 0}, "'steps' must be >= 1"),
        ("seeds_2a", {"noise": {}}, "noise 'nodes'"),
        ("seeds_2a", {"parameters": []}, "'parameters' must be an object"),
        ("res_2s", {"family": "implicit"}, "unknown family 'implicit'"),
    ],
)
def test_a_resealed_record_of_the_wrong_shape_names_its_field(tmp_path, name, changes, fragment):
    # the hash is recomputed, so only the family's schema can catch the edit
    data = _resealed(load_record(name), **changes)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        read_record(path)
    with pytest.raises(InputError):
        typed_record(data).save(tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_an_edit_is_named_an_edit_and_a_missing_field_is_named(tmp_path):
    data = json.loads(json.dumps(load_record("res_2s")))
    data["description"] = "mine"
    path = tmp_path / "res_2s.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="edited by hand"):
        read_record(path)
    del data["orders"]
    with pytest.raises(InputError, match="missing field"):
        typed_record(_resealed(data))


def test_a_record_built_by_the_derive_layer_is_sealed_and_typed():
    from phiforge.derive.multistep import exponential_adams
    from phiforge.derive.registry import multistep_record

    record = multistep_record(exponential_adams(2, name="ab2"), {"kind": "derived"})
    assert isinstance(record, MultistepRecord) and record["hash"] == content_hash(record)
    assert record.name == "ab2" and record["orders"]["scalar"]["stiff"] == 2
