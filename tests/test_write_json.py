"""metrics.write_json, the one JSON writer: plain values out of NumPy/JAX, strict JSON for
non-finite floats, and atomic (a failed write leaves the old file whole and no temp file)."""

import json
import os
import stat

import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import metrics, registry


def test_numpy_jax_nonfinite_and_keys_become_plain_json(tmp_path):
    path = tmp_path / "new" / "folder" / "r.json"  # the parent folders are created
    obj = {
        "b": np.float32(0.5), 3: (1, np.int64(2)), "arr": np.arange(3).reshape(1, 3),
        "jax": jnp.ones(2), "flag": np.bool_(True), "nan": float("nan"), "inf": np.float64(-np.inf),
        "none": None, "path": tmp_path.name,
    }  # fmt: skip
    metrics.write_json(path, obj)
    text = path.read_text()
    assert text.endswith("}\n") and "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "b": 0.5, "3": [1, 2], "arr": [[0, 1, 2]], "jax": [1.0, 1.0], "flag": True,
        "nan": "nan", "inf": "-inf", "none": None, "path": tmp_path.name,
    }  # fmt: skip
    assert list(json.loads(text)) == sorted(json.loads(text))  # sorted keys: stable diffs
    assert json.loads(text, parse_constant=pytest.fail)  # strict JSON: no NaN/Infinity tokens


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "r.json"
    metrics.write_json(path, {"step": 1})

    class Broken:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError, match="cannot convert"):
        metrics.write_json(path, {"step": 2, "bad": Broken()})
    assert json.loads(path.read_text()) == {"step": 1}
    assert os.listdir(tmp_path) == ["r.json"]


def test_permissions_follow_the_umask_not_a_private_temp_file(tmp_path):
    old = os.umask(0o022)
    try:
        metrics.write_json(tmp_path / "r.json", [1])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644


def test_the_registry_writes_with_the_same_function():
    assert registry.write_json is metrics.write_json
