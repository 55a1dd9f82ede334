"""Token inputs (rnnlab.Embedded) and the read-ahead scan (rnnlab.engine.loops.common).

``Embedded(ids, table)`` must give what the embedded rows ``table[ids]`` give, values and
gradients (to the params, the table, the carry and a carry perturbation), on every path: the
fused backward with the in-loop gather or the hoisted one, the autodiff scan, chunked remat.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.engine import RNN, Embedded, loops, make_cell, unroll
from rnnlab.engine import plan as plan_lib
from rnnlab.engine.loops import common
from rnnlab.models import CharLM

B, T, V, D, H = 3, 7, 11, 5, 6  # V < T*B: the table is projected, not the tokens


def setup(name):
    cell = make_cell(name, H)
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    ids = jax.random.randint(k[0], (B, T), 0, V)
    table = jax.random.normal(k[1], (V, D))
    params = cell.init(k[2], cell.initialize_carry(None, (B, D)), table[:1])
    carry = jax.tree.map(lambda z: 0.5 * jnp.ones_like(z), cell.initialize_carry(None, (B, D)))
    return cell, params, ids, table, carry, k[3]


def grads(cell, params, xs_of, table, carry, key, **kw):
    eps = jax.tree.map(lambda c: jnp.zeros((B, T) + c.shape[1:]), carry)

    def loss(params, table, carry, eps):
        final, ys, _ = unroll(cell, params, xs_of(table), carry, perturbation=eps, **kw)
        total = jnp.sum(ys * jax.random.normal(key, ys.shape))
        return total + sum(jnp.sum(jnp.sin(c)) for c in jax.tree.leaves(final))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(params, table, carry, eps)


def assert_close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        scale = max(1.0, float(jnp.max(jnp.abs(y))))
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol * scale)


PATHS = {
    "fused_in_loop": {"backward": "fused"},
    "fused_hoisted": {"backward": "fused", "hoisted": True},
    "autodiff": {"backward": "autodiff"},
    "fused_chunked": {"backward": "fused", "remat": "chunked"},
    "fused_remat": {"backward": "fused", "remat": True},
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
@pytest.mark.slow
def test_embedded_equals_embedded_rows(name, path, monkeypatch):
    kw = dict(PATHS[path])
    if kw.pop("hoisted", False):
        monkeypatch.setitem(plan_lib.THRESHOLDS, "in_loop_max_d", {})
    kw |= {"seq_lengths": jnp.array([5, 7, 0]), "reverse": True}
    cell, params, ids, table, carry, key = setup(name)
    want = grads(
        cell,
        params,
        lambda t: t[ids],
        table,
        carry,
        key,
        backward="autodiff",
        **{k: v for k, v in kw.items() if k != "backward"},
    )
    got = grads(cell, params, lambda t: Embedded(ids, t), table, carry, key, **kw)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    assert_close(got[1], want[1])


@pytest.mark.slow
def test_the_engine_projects_the_table_only_when_it_is_smaller(monkeypatch):
    """V < T*B: the fused loop gathers from the projected table ("ids"); else the rows go as
    usual."""
    seen = []
    real = loops.LOOPS["fused"]
    monkeypatch.setitem(loops.LOOPS, "fused", lambda *a: seen.append(a[3].kind) or real(*a))
    cell, params, ids, table, carry, _ = setup("lstm")
    unroll(cell, params, Embedded(ids, table), backward="fused")
    unroll(cell, params, Embedded(ids[:1, :5], table), backward="fused")  # V=11 >= 5 tokens
    monkeypatch.setitem(plan_lib.THRESHOLDS, "in_loop_max_d", {})  # no in-loop inputs here
    unroll(cell, params, Embedded(ids, table), backward="fused")
    assert seen == ["ids", "x", "xp"]


@pytest.mark.slow
def test_charlm_reads_tokens_as_embedded_ids(monkeypatch):
    """The char-LM's loss and gradients are the same with the table projected or the rows."""
    model = CharLM(V, hidden_size=H, num_layers=2, embed_dim=D, backward="fused")
    ids = jax.random.randint(jax.random.PRNGKey(1), (B, T + 1), 0, V)
    batch = {"inputs": ids[:, :-1], "targets": ids[:, 1:]}
    params = model.init(jax.random.PRNGKey(2), batch["inputs"])
    loss = lambda p: model.apply(p, batch, method="loss")[0]
    folded = jax.value_and_grad(loss)(params)
    monkeypatch.setitem(plan_lib.THRESHOLDS, "fold_embedding", False)
    plain = jax.value_and_grad(loss)(params)
    np.testing.assert_allclose(folded[0], plain[0], rtol=1e-6)
    assert_close(folded[1], plain[1])


@pytest.mark.slow
def test_embedded_errors():
    cell, params, ids, table, _, _ = setup("gru")
    with pytest.raises(ValueError, match=r"Embedded ids of integers with shape \[B, T\]"):
        unroll(cell, params, Embedded(ids.astype(jnp.float32), table))
    with pytest.raises(ValueError, match=r"Embedded table of floats with shape \[V, D\]"):
        unroll(cell, params, Embedded(ids, table[0]))
    layer = RNN("gru", H)
    made = layer.init(jax.random.PRNGKey(0), Embedded(ids, table))  # for D-wide rows
    with pytest.raises(ValueError, match=f"expected inputs with {D} features.*got {D + 1}"):
        layer.apply(made, Embedded(ids, jnp.zeros((V, D + 1))))


@pytest.mark.parametrize("ahead", [("a", "ids"), ("a",)])  # load reads "ids" early, or in step
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps", [1, 6])
def test_scan_ahead_equals_lax_scan(reverse, steps, ahead):
    xs = {
        "a": jax.random.normal(jax.random.PRNGKey(0), (steps, 2, 3)),
        "ids": jnp.arange(steps * 2).reshape(steps, 2) % 4,
        "b": jnp.arange(steps, dtype=jnp.float32),
    }
    table = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    load = lambda x: {**x, "ids": table[x["ids"]]} if "ids" in x else x  # gathers rows

    def f(c, x):
        c = jnp.tanh(c * x["a"] + x["ids"] + x["b"])
        return c, c.sum()

    want = jax.lax.scan(lambda c, x: f(c, load(x)), jnp.ones((2, 3)), xs, reverse=reverse)
    for early in (ahead, ()):  # read ahead, or not (the plan's read_ahead)
        got = common.scan_ahead(f, jnp.ones((2, 3)), xs, ahead=early, reverse=reverse, load=load)
        assert_close(got, want, 1e-6)


@pytest.mark.slow
def test_unread_rows_get_zero_gradient():
    """Rows of the table no token reads get exactly zero gradient (the scatter-add)."""
    cell, params, ids, table, carry, key = setup("lstm")
    ids = jnp.minimum(ids, V - 3)  # the last two rows are never read
    _, (_, d_table, _, _) = grads(
        cell, params, lambda t: Embedded(ids, t), table, carry, key, backward="fused"
    )
    assert np.all(np.asarray(d_table[-2:]) == 0.0)
    assert np.any(np.asarray(d_table[: V - 2]) != 0.0)


@pytest.mark.slow
def test_rnn_layer_bidirectional_stack_reads_embedded_ids():
    """RNN(bidirectional, 2 layers): Embedded ids give the outputs and gradients of table[ids]."""
    _, _, ids, table, _, _ = setup("gru")
    layer = RNN("gru", H, num_layers=2, bidirectional=True, backward="fused")
    params = layer.init(jax.random.PRNGKey(3), table[ids])
    lengths = jnp.array([7, 4, 1])

    def loss(p, t, embedded):
        x = Embedded(ids, t) if embedded else t[ids]
        return jnp.sum(jnp.sin(layer.apply(p, x, lengths).outputs))

    got = jax.value_and_grad(loss, argnums=(0, 1))(params, table, True)
    want = jax.value_and_grad(loss, argnums=(0, 1))(params, table, False)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
    assert_close(got[1], want[1])
