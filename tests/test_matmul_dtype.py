"""Mixed precision: ``matmul_dtype`` on the dense cells (bfloat16 operands, float32 the rest).

The recurrent matmul ``h @ W_h`` takes operands in ``matmul_dtype`` and accumulates in the
computation dtype; gates, carries and outputs stay float32. Both backward paths (fused, autodiff)
apply it, and a model trains with it end to end from the config.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import tiny_config, tiny_text

from rnnlab import cells, train
from rnnlab.engine import RNN

DENSE = ("elman", "lstm", "gru")
B, T, D, H = 3, 9, 5, 64
BF16 = {"matmul_dtype": "bfloat16"}


def rel(a, b) -> float:
    a, b = (jnp.concatenate([x.ravel() for x in jax.tree.leaves(t)]) for t in (a, b))
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def outputs_and_grads(model, params, x):
    def loss(p):
        out = model.apply(p, x)
        return jnp.sum(jnp.sin(out.outputs)), out

    (_, out), grads = jax.value_and_grad(loss, has_aux=True)(params)
    return out, grads


@pytest.mark.parametrize("cell", DENSE)
@pytest.mark.slow
def test_bf16_matmuls_close_to_float32_on_both_backward_paths(cell):
    x = jax.random.normal(jax.random.key(0), (B, T, D))
    params = RNN(cell, H).init(jax.random.key(1), x)
    ref_out, ref_grads = outputs_and_grads(RNN(cell, H), params, x)
    got = {
        path: outputs_and_grads(RNN(cell, H, cell_options=BF16, backward=path), params, x)
        for path in ("fused", "autodiff")
    }
    (fused_out, fused_grads), (ad_out, ad_grads) = got["fused"], got["autodiff"]
    # one forward for both paths: the same bf16 products
    np.testing.assert_allclose(fused_out.outputs, ad_out.outputs, rtol=1e-6, atol=1e-6)
    for out in (fused_out, ad_out):  # float32 carries and outputs, bfloat16 rounding only
        assert out.outputs.dtype == jnp.float32
        assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(out.final_carry))
        assert 0 < rel(out.outputs, ref_out.outputs) < 1e-2
    # the backward paths round dh to bfloat16 at different places: close, not equal
    assert rel(fused_grads, ad_grads) < 1e-2
    assert rel(fused_grads, ref_grads) < 2e-2 and rel(ad_grads, ref_grads) < 2e-2


@pytest.mark.parametrize("backward", ["fused", "autodiff"])
@pytest.mark.slow
def test_the_recurrent_matmuls_take_bf16_operands_and_give_float32(backward):
    x = jax.random.normal(jax.random.key(0), (B, T, D))
    model = RNN("lstm", H, cell_options=BF16, backward=backward)
    params = model.init(jax.random.key(1), x)
    grad = jax.grad(lambda p: jnp.sum(model.apply(p, x).outputs))
    text = str(jax.make_jaxpr(grad)(params))
    # h_{t-1} [B, H] cast to bfloat16 for h @ W_h, the product accumulated in float32
    assert "bf16[3,64]" in text and "preferred_element_type=float32" in text
    plain = RNN("lstm", H, backward=backward)
    text = str(jax.make_jaxpr(jax.grad(lambda p: jnp.sum(plain.apply(p, x).outputs)))(params))
    assert "bf16" not in text  # the default: float32 throughout


@pytest.mark.parametrize("value", ["int8", "bfloat17", 3])
def test_bad_matmul_dtype_is_refused_with_the_value(value):
    with pytest.raises(ValueError) as info:
        RNN("lstm", H, cell_options={"matmul_dtype": value})
    assert "matmul_dtype" in str(info.value) and repr(value) in str(info.value)


def test_recurrent_matmul_accumulates_in_the_state_dtype():
    h = jax.random.normal(jax.random.key(0), (4, 32))
    w = jax.random.normal(jax.random.key(1), (32, 8))
    got = cells.recurrent_matmul(h, w, "bfloat16")
    want = h.astype(jnp.bfloat16).astype(jnp.float32) @ w.astype(jnp.bfloat16).astype(jnp.float32)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cells.recurrent_matmul(h, w, None), h @ w)


@pytest.mark.slow
def test_a_model_trains_with_bf16_matmuls_from_the_config(tmp_path):
    config = tiny_config("model.cell_options.matmul_dtype=bfloat16", "model.backward=fused")
    summary = train.train_and_evaluate(config, tmp_path, dataset=tiny_text(config))
    losses = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in losses if r["kind"] == "train"]
    assert summary["step"] == 30 and losses[-1] < losses[0]
