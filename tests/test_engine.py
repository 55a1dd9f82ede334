"""The engine (rnnlab/unroll.py): stacking, dropout, residual, bidirectional, initial carry,
return_states, the perturbation hook, remat, unroll and reverse -- each against a reference
built by hand from single layers or a Python loop over ``cell.step``."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab.engine import RNN, unroll

B, T, D, H = 3, 6, 3, 4
LENGTHS = jnp.array([T, 4, 1])
TOL = dict(rtol=1e-5, atol=1e-6)


def inputs(seed=0, shape=(B, T, D)):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def close(got, want, **tol):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, **(tol or TOL)), got, want)


def layer(variables, l, d="fwd"):
    return variables["params"][f"layer_{l}"][d]


@pytest.mark.slow
def test_stack_equals_layers_by_hand_and_dropout_only_when_not_deterministic():
    x = inputs()
    rnn = RNN("elman", H, num_layers=2, dropout=0.5)
    variables = rnn.init(jax.random.key(0), x)
    cell = rnn.make_cell()
    apply = jax.jit(rnn.apply, static_argnames="deterministic")
    by_hand = lambda v, x: unroll(cell, layer(v, 1), unroll(cell, layer(v, 0), x)[1])[1]
    want = jax.jit(by_hand)(variables, x)
    close(apply(variables, x).outputs, want)  # deterministic=True by default: no dropout
    rngs = lambda k: {"dropout": jax.random.key(k)}
    drop1 = apply(variables, x, deterministic=False, rngs=rngs(1)).outputs
    drop2 = apply(variables, x, deterministic=False, rngs=rngs(2)).outputs
    assert not np.allclose(drop1, want) and not np.allclose(drop1, drop2)
    # dropout acts between layers only (as in PyTorch): never after the last one
    single = RNN("elman", H, num_layers=1, dropout=0.5)
    v1 = {"params": {"layer_0": variables["params"]["layer_0"]}}
    close(
        single.apply(v1, x, deterministic=False, rngs=rngs(1)).outputs, single.apply(v1, x).outputs
    )


@pytest.mark.slow
def test_residual_adds_the_layer_input_where_widths_match():
    x = inputs()
    rnn = RNN("gru", H, num_layers=3, residual=True)
    variables = rnn.init(jax.random.key(0), x)
    cell = rnn.make_cell()

    @jax.jit
    def by_hand(v, x):
        y0 = unroll(cell, layer(v, 0), x)[1]  # D != H: no residual on layer 0
        y1 = unroll(cell, layer(v, 1), y0)[1] + y0
        return unroll(cell, layer(v, 2), y1)[1] + y1

    close(jax.jit(rnn.apply)(variables, x).outputs, by_hand(variables, x))


@pytest.mark.slow
def test_bidirectional_outputs_and_final_state_per_direction():
    x = inputs()
    rnn = RNN("lstm", H, bidirectional=True)
    variables = rnn.init(jax.random.key(0), x)
    cell = rnn.make_cell()
    out = jax.jit(rnn.apply)(variables, x, LENGTHS)
    fwd, bwd = out.final_carry[0]

    @jax.jit
    def alone(v, x):  # each sequence on its own, the backward one flipped by hand
        seqs = [x[b : b + 1, :L] for b, L in enumerate(LENGTHS.tolist())]
        fwd = [unroll(cell, layer(v, 0, "fwd"), s) for s in seqs]
        return fwd, [unroll(cell, layer(v, 0, "bwd"), jnp.flip(s, axis=1)) for s in seqs]

    refs = alone(variables, x)
    for b, L in enumerate(LENGTHS.tolist()):
        (f_carry, f_ys, _), (b_carry, b_ys, _) = refs[0][b], refs[1][b]
        close(out.outputs[b : b + 1, :L], jnp.concatenate([f_ys, jnp.flip(b_ys, axis=1)], -1))
        close(jax.tree.map(lambda a: a[b : b + 1], fwd), f_carry)
        close(jax.tree.map(lambda a: a[b : b + 1], bwd), b_carry)
        np.testing.assert_array_equal(out.outputs[b, L:], 0.0)


def test_reverse_with_seq_lengths_equals_reversing_each_sequence_alone():
    x = inputs(1)
    rnn = RNN("elman", H)
    cell = rnn.make_cell()
    params = layer(rnn.init(jax.random.key(0), x), 0)

    @jax.jit
    def run(p, x):
        masked = unroll(cell, p, x, seq_lengths=LENGTHS, reverse=True, return_states=True)
        seqs = [jnp.flip(x[b : b + 1, :L], 1) for b, L in enumerate(LENGTHS.tolist())]
        return masked, [unroll(cell, p, s, return_states=True) for s in seqs]

    (carry, ys, states), refs = run(params, x)
    for b, L in enumerate(LENGTHS.tolist()):
        a_carry, a_ys, a_states = refs[b]
        close(ys[b : b + 1, :L], jnp.flip(a_ys, 1))
        close(states[b : b + 1, :L], jnp.flip(a_states, 1))
        close(carry[b : b + 1], a_carry)


def test_given_and_learned_initial_carry():
    x = inputs()
    rnn = RNN("lstm", H, num_layers=2, initial_carry="learned")
    variables = rnn.init(jax.random.key(0), x)
    assert set(variables["params"]) == {"layer_0", "layer_1", "carry0_0", "carry0_1"}
    assert jax.tree.map(jnp.shape, variables["params"]["carry0_0"]) == {"fwd": ((H,), (H,))}
    # a learned carry c0 acts like the same carry given for every sequence
    rng = np.random.default_rng(0)
    carry0 = {
        f"carry0_{l}": {
            "fwd": tuple(jnp.asarray(rng.standard_normal(H), jnp.float32) for _ in "ch")
        }
        for l in range(2)
    }
    variables = {"params": {**variables["params"], **carry0}}
    plain = RNN("lstm", H, num_layers=2)

    @jax.jit
    def run(v):
        given = [
            jax.tree.map(lambda c: jnp.broadcast_to(c, (B, H)), v["params"][f"carry0_{l}"]["fwd"])
            for l in range(2)
        ]
        layers = {"params": {k: p for k, p in v["params"].items() if k.startswith("layer")}}
        grads = jax.grad(lambda v: jnp.sum(rnn.apply(v, x).outputs ** 2))(v)
        return (
            rnn.apply(v, x),
            plain.apply(layers, x, initial_carry=given).outputs,
            unroll(plain.make_cell(), layer(v, 0), x, given[0])[0],
            grads["params"]["carry0_0"],
        )

    learned, given_outputs, layer0_final, carry_grads = run(variables)
    close(learned.outputs, given_outputs)
    # the given carry really is the first layer's initial carry
    close(learned.final_carry[0], layer0_final)
    # and the learned carry gets a gradient
    assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(carry_grads))


def test_return_states_match_a_python_loop_and_final_carry():
    x = inputs()
    rnn = RNN("lstm", H, num_layers=2)
    variables = rnn.init(jax.random.key(0), x)
    cell = rnn.make_cell()
    out = jax.jit(lambda v, x: rnn.apply(v, x, LENGTHS, return_states=True))(variables, x)

    @jax.jit
    def loop(v, x):  # the reference: a plain loop over cell.step, layer 0, masked by hand
        carry, states = cell.initialize_carry(None, (B, D)), []
        for t in range(T):
            new, _ = cell.apply(layer(v, 0), carry, x[:, t])
            keep = lambda n, o, t=t: jnp.where((t < LENGTHS)[:, None], n, o)
            carry = jax.tree.map(keep, new, carry)
            states.append(carry)
        return carry, states

    carry, states = loop(variables, x)
    for t in range(T):
        close(jax.tree.map(lambda s, t=t: s[:, t], out.states[0]), states[t])
    close(out.final_carry[0], carry)
    c, h = out.states[1]
    assert c.shape == h.shape == (B, T, H)
    close(h * (jnp.arange(T)[None, :] < LENGTHS[:, None])[..., None], out.outputs)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru", "lru"])
@pytest.mark.slow
def test_perturbation_gradient_is_dL_dh_t(cell):
    """dL/d eps_t at eps = 0 equals the total derivative dL/dh_t computed by brute force: for
    each t, rerun from h_t (its own output y_t, then the later steps) with a Python loop and
    differentiate that w.r.t. h_t. The hook adds eps_t to the carry of step t and y_t is read
    from the perturbed carry, so the direct term dL/dy_t * dy_t/dh_t is included (for a loss
    on the last output only, dL/dh_{T-1} is not zero).
    """
    x = inputs(shape=(2, 5, D))
    rnn = RNN(cell, 3, backward="autodiff")
    variables = rnn.init(jax.random.key(0), x)
    module, params = rnn.make_cell(), layer(variables, 0)
    w = inputs(2, shape=(2, 5, 3))
    w_final = inputs(3, shape=(2, 3))
    final_h = lambda carry: carry[1] if cell == "lstm" else carry[..., :3]
    zeros = jax.tree.map(
        lambda z: jnp.zeros((2, 5, *z.shape[1:])), module.initialize_carry(None, (2, D))
    )

    def loss_hook(eps):
        out = rnn.apply(variables, x, perturbation=[eps])
        return jnp.sum(out.outputs * w) + jnp.sum(final_h(out.final_carry[0]) * w_final)

    hook = jax.jit(jax.grad(loss_hook))(zeros)

    def output(t, carry):  # y_t as a function of the carry of step t
        if cell == "lru":
            xp_t = module.apply(params, x[:, t], method="project")
            return module.apply(params, carry, xp_t, method="output")
        return carry[1] if cell == "lstm" else carry

    def loss_after(t, carry):  # the loss terms that read the carry of step t
        total = jnp.sum(output(t, carry) * w[:, t])
        for s in range(t + 1, 5):
            carry, y = module.apply(params, carry, x[:, s])
            total = total + jnp.sum(y * w[:, s])
        return total + jnp.sum(final_h(carry) * w_final)

    @jax.jit
    def brute_force():
        carries, carry = [], module.initialize_carry(None, (2, D))
        for t in range(5):
            carry, _ = module.apply(params, carry, x[:, t])
            carries.append(carry)
        return [jax.grad(loss_after, argnums=1)(t, carries[t]) for t in range(5)]

    for t, brute in enumerate(brute_force()):
        close(jax.tree.map(lambda g, t=t: g[:, t], hook), brute, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_remat_and_unroll_give_the_same_outputs_and_gradients():
    x = inputs()
    base = RNN("gru", H)
    variables = base.init(jax.random.key(0), x)
    variants = [base, RNN("gru", H, remat=True), RNN("gru", H, unroll=4)]

    @jax.jit
    def run(v):
        f = lambda rnn, v: jnp.sum(rnn.apply(v, x, LENGTHS).outputs ** 2)
        return [jax.value_and_grad(partial(f, rnn))(v) for rnn in variants]

    want, *others = run(variables)
    for got in others:
        close(got, want, rtol=1e-5, atol=1e-6)


def test_engine_is_exported_at_top_level():
    assert rnnlab.RNN is RNN and rnnlab.unroll is unroll


def test_explain_names_every_layer_and_direction_and_why():
    """``rnnlab.explain``: one line per layer and direction, the loop taken and the reason for
    every faster loop not taken; ``backward`` from the model steers it."""
    x = inputs()
    lines = rnnlab.explain(RNN("lstm", H, num_layers=2, bidirectional=True), x)
    assert [line.split(":")[0] for line in lines] == [
        f"rnn layer {l} {d}" for l in (0, 1) for d in ("forward", "backward")
    ]
    assert "XLA scan (autodiff backward" in lines[0]
    assert "associative scan not applicable: not linear in the state" in lines[0]
    assert f"native kernel not taken: H={H} is below the fused backward's threshold" in lines[0]
    fused = rnnlab.explain(RNN("lstm", H, backward="fused"), x)[0]
    assert "XLA scan (fused backward" in fused and "fused backward not" not in fused
    linear = rnnlab.explain(RNN("mingru", H, scan="associative"), x)[0]
    assert linear.startswith("rnn layer 0 forward: associative scan")
    with pytest.raises(ValueError, match="backward must be one of"):
        rnnlab.explain(RNN("lstm", H, backward="fast"), x)


@pytest.mark.slow
def test_a_run_prints_its_plan_first_and_writes_plan_json(tmp_path, capsys):
    import json

    from test_train import tiny_config, tiny_text

    from rnnlab import cli, train

    config = tiny_config("train.num_steps=2", "train.eval_every=2")
    train.train_and_evaluate(config, tmp_path, dataset=tiny_text(config))
    out = capsys.readouterr().out
    assert out.lstrip().startswith("plan: ") or "\nplan: " in out.split("\n\n")[0]
    record = json.loads((tmp_path / "plan.json").read_text())
    assert record["backend"] == jax.default_backend() and record["plans"]
    assert record["plans"][0]["loop"] == "autodiff" and record["plans"][0]["where"]
    assert cli.main(["explain", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert record["plans"][0]["describe"] in shown
    assert cli.main(["explain", str(tmp_path / "nope")]) == 2
    assert "plan.json" in capsys.readouterr().err
