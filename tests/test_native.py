"""The native LSTM, GRU and Elman loops (rnnlab.engine.loops.native) against the autodiff scan,
the reference: values and gradients equal to 1e-5 in float32, for every way the engine feeds them (projected
inputs, narrow inputs projected by the engine, embedded token ids), and the cases they must
leave to XLA.

The kernel needs an x86 CPU with AVX-512 (F, DQ) and a C++ compiler; where either is missing,
``rnnlab.engine.kernels.available()`` is False and the plan takes the XLA scan (tested at the
end)."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab.engine import Embedded, make_cell, unroll
from rnnlab.engine import kernels as native
from rnnlab.engine import plan as plan_lib

needs_kernel = pytest.mark.skipif(
    not (native._cpu_has_avx512() and shutil.which("g++")),
    reason="the native kernel needs AVX-512 (F, DQ) and g++ (elsewhere the XLA scan runs: tested below)",
)
B, T, D, V = 5, 13, 7, 11  # T*B = 65 rows: at least THRESHOLDS['native_min_rows']


#: name -> (cell, options): every native loop, and both Elman activations
SPECS = {
    "lstm": ("lstm", {}),
    "gru": ("gru", {}),
    "elman": ("elman", {}),
    "elman-relu": ("elman", {"activation": "relu"}),
}
CELLS = list(SPECS)


@pytest.fixture(autouse=True)
def split_small_steps(monkeypatch):
    """Let these small test steps split over threads (the kernel's 2+ thread path) too."""
    monkeypatch.setattr(native, "MIN_WORK", 0)


def setup(H, seed=0, name="lstm"):
    cell = make_cell(SPECS[name][0], H, SPECS[name][1])
    k = jax.random.split(jax.random.PRNGKey(seed), 6)
    xs = jax.random.normal(k[0], (B, T, D))
    params = cell.init(k[1], cell.initialize_carry(None, (B, D)), xs[:, 0])
    carry = jax.tree.map(
        lambda z: 0.5 * jax.random.normal(k[2], z.shape), cell.initialize_carry(None, (B, D))
    )
    ids = jax.random.randint(k[3], (B, T), 0, V)
    table = jax.random.normal(k[4], (V, D))
    w_out = jax.random.normal(k[5], (H,))
    return cell, params, xs, carry, ids, table, w_out


def takes(cell, T=32, B=2, dtype=jnp.float32, vocab=None, **options):
    """Whether the plan runs ``cell`` on ``[B, T, 8]`` inputs with the native kernel."""
    options = plan_lib.Options(**options)
    return plan_lib.plan(cell, (B, T, 8), dtype, vocab=vocab, options=options).loop == "native"


def count_calls(monkeypatch, name, calls):
    """Append to ``calls`` whenever the native forward of cell ``name`` is traced."""
    kernel = f"{SPECS[name][0]}_forward"
    real = getattr(native, kernel)
    monkeypatch.setattr(native, kernel, lambda *a, **k: calls.append(1) or real(*a, **k))


def objective(final, ys, w_out):
    """Reads every output and every leaf of the final carry (LSTM (c, h); GRU h)."""
    leaves = jax.tree.leaves(final)
    return jnp.sum(jnp.tanh(ys) @ w_out) + jnp.sum(leaves[0] ** 2) + jnp.sum(leaves[-1] @ w_out)


def loss_and_grads(cell, params, xs, carry, w_out, backward):
    """:func:`objective` and its gradient wrt params, initial carry and inputs."""

    def loss(params, carry, xs):
        final, ys, _ = unroll(cell, params, xs, carry, backward=backward)
        return objective(final, ys, w_out)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, carry, xs)


def assert_close(got, want, tol=1e-5):
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = max(1.0, float(jnp.abs(w).max()))
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=tol * scale)


def test_the_engine_hands_a_cell_to_the_kernel_only_where_it_applies():
    """The plan: the LSTM, GRU and Elman in float32 with H a multiple of 32 (masked or perturbed
    or not: the plan does not ask); not per-step remat, returned states, bf16 matmuls or
    inputs, another cell, or RNNLAB_NATIVE=0 (each with its reason)."""
    lstm = make_cell("lstm", 64)
    assert takes(lstm) == native.available()
    assert not takes(make_cell("jordan", 64))
    assert takes(make_cell("elman", 64, {"activation": "relu"})) == native.available()
    assert takes(make_cell("gru", 64)) == native.available()
    assert not takes(make_cell("gru", 64, {"convention": "cho"}))
    assert not takes(make_cell("lstm", 64, {"matmul_dtype": "bfloat16"}))
    assert not takes(make_cell("lstm", 48))  # 48 units do not split into 32-wide panels
    assert not takes(lstm, dtype=jnp.bfloat16)
    assert not takes(lstm, states=True)
    assert not takes(lstm, remat=True)
    plan = plan_lib.plan(lstm, (2, 32, 8), options=plan_lib.Options(states=True))
    assert (
        dict(plan.declined)["native"] == "return_states was asked for (the kernels keep no states)"
    )


@needs_kernel
@pytest.mark.slow
def test_kernel_is_built_and_used(monkeypatch):
    """On this machine the kernel must compile, and the engine must call it."""
    assert native.available()
    calls = []
    real = native.lstm_forward
    monkeypatch.setattr(native, "lstm_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    cell, params, xs, carry, *_ = setup(64)
    unroll(cell, params, xs, carry, backward="fused")
    assert calls


@needs_kernel
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("H", [32, 64, 96])
@pytest.mark.parametrize("inputs", ["projected", "in_loop", "ids"])
@pytest.mark.slow
def test_values_and_gradients_equal_the_autodiff_scan(monkeypatch, name, H, inputs):
    """H=96 with 2 CPUs runs one thread (96 = 3 panels); 64 runs two: both splits are covered
    where the machine has 2+ CPUs (RNNLAB_NATIVE_THREADS sets it)."""
    cell, params, xs, carry, ids, table, w_out = setup(H, name=name)
    calls = []
    count_calls(monkeypatch, name, calls)
    in_loop = {jax.default_backend(): D if inputs == "in_loop" else 0}
    monkeypatch.setitem(plan_lib.THRESHOLDS, "in_loop_max_d", in_loop)
    if inputs == "ids":
        xs = Embedded(ids, table)  # V = 11 < T*B: the kernel gathers the projected table's rows

        def grads(backward):  # wrt the table too
            def loss(params, carry, table):
                final, ys, _ = unroll(cell, params, Embedded(ids, table), carry, backward=backward)
                return objective(final, ys, w_out)

            return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, carry, table)

        got, want = grads("fused"), grads("autodiff")
    else:
        got = loss_and_grads(cell, params, xs, carry, w_out, "fused")
        want = loss_and_grads(cell, params, xs, carry, w_out, "autodiff")
    assert calls  # the kernel ran
    assert_close(got, want)


@needs_kernel
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("inputs", ["projected", "ids"])
@pytest.mark.slow
def test_the_probe_dl_dh_t_equals_the_autodiff_scan(monkeypatch, name, inputs):
    """A perturbation of the carry after every step (the dL/dh_t probes): the loss, dL/d eps
    for every t (LSTM: of c_t and of h_t) and the parameter gradients, against autodiff."""
    calls = []
    count_calls(monkeypatch, name, calls)
    cell, params, xs, carry, ids, table, w_out = setup(64, name=name, seed=2)
    xs = Embedded(ids, table) if inputs == "ids" else xs
    key = jax.random.PRNGKey(5)
    eps = jax.tree.map(lambda c: 0.1 * jax.random.normal(key, (B, T) + c.shape[1:]), carry)

    def grads(backward):
        def loss(params, eps):
            final, ys, _ = unroll(cell, params, xs, carry, perturbation=eps, backward=backward)
            return objective(final, ys, w_out)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, eps)

    got, want = grads("fused"), grads("autodiff")
    assert calls
    assert_close(got, want)


@needs_kernel
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("threads", ["1", "2", "4"])
@pytest.mark.slow
def test_thread_counts_agree(monkeypatch, name, threads):
    """The work split over threads (units 0..H/n per thread) gives the same values."""
    monkeypatch.setenv("RNNLAB_NATIVE_THREADS", threads)
    cell, params, xs, carry, *_, w_out = setup(128, seed=1, name=name)
    got = loss_and_grads(cell, params, xs, carry, w_out, "fused")
    want = loss_and_grads(cell, params, xs, carry, w_out, "autodiff")
    assert_close(got, want)


@needs_kernel
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.slow
def test_vmap_over_seeds_and_saturated_gates(name):
    """Under vmap (the trainer's seeds) the call runs per seed; saturated gates stay finite."""
    cell, params, xs, carry, *_, w_out = setup(64, name=name)
    stacked = jax.tree.map(lambda p: jnp.stack([p, 3.0 * p]), params)
    f = lambda backward: jax.vmap(
        lambda p: loss_and_grads(cell, p, 4.0 * xs, carry, w_out, backward)
    )(stacked)
    got, want = f("fused"), f("autodiff")
    assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(got))
    assert_close(got, want)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.slow
def test_switched_off_runs_the_xla_scan(monkeypatch, name):
    """RNNLAB_NATIVE=0 (or no compiler / no AVX-512 (F, DQ)): the engine runs the XLA scan, with the
    same results, and calling the kernel directly says why it cannot run."""
    monkeypatch.setenv("RNNLAB_NATIVE", "0")
    native._library.cache_clear()
    try:
        assert not native.available()
        cell, params, xs, carry, *_, w_out = setup(64, name=name)
        got = loss_and_grads(cell, params, xs, carry, w_out, "fused")
        want = loss_and_grads(cell, params, xs, carry, w_out, "autodiff")
        assert_close(got, want)
        with pytest.raises(RuntimeError, match="not available"):
            native.lstm_forward(jnp.zeros((2, 1, 128)), None, jnp.zeros((32, 128)),
                                jnp.zeros((1, 32)), jnp.zeros((1, 32)), save=False)  # fmt: skip
    finally:
        native._library.cache_clear()


@needs_kernel
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.slow
def test_chunked_remat_runs_the_kernel_in_each_chunk(monkeypatch, name):
    """remat="chunked" picks a chunk length dividing T (T=36: 6 chunks of 6), so no step is
    masked and each chunk runs the kernel; gradients equal the autodiff scan's."""
    calls = []
    count_calls(monkeypatch, name, calls)
    cell, params, _, carry, *_, w_out = setup(64, name=name)
    xs = jax.random.normal(jax.random.PRNGKey(3), (16, 36, D))
    carry = jax.tree.map(lambda c: jnp.resize(c, (16, 64)), carry)

    def grads(backward):
        def loss(params, carry, xs):
            final, ys, _ = unroll(cell, params, xs, carry, backward=backward, remat="chunked")
            return objective(final, ys, w_out)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, carry, xs)

    got = grads("fused")
    assert calls
    assert_close(got, grads("autodiff"))


def test_sampling_one_step_at_a_time_stays_on_xla():
    """Fewer than native_min_rows rows T*B (sampling: one step, batch 1) take the XLA scan."""
    assert not takes(make_cell("lstm", 64), T=1, B=1)
    rows = plan_lib.THRESHOLDS["native_min_rows"]
    assert takes(make_cell("lstm", 64), T=rows, B=1, vocab=5) == native.available()


def test_a_subclass_does_not_inherit_the_kernel():
    """A cell subclassing the LSTM may change the gate math the kernel hard-codes: it runs the
    XLA scan unless its own class declares the adapter."""
    from rnnlab.cells import lstm

    class Peephole(lstm.Cell):  # pretend: a changed update()
        pass

    class Declared(lstm.Cell):
        native = lstm.NativeLSTM()

    assert not takes(Peephole(64))
    assert (
        "does not declare one itself"
        in dict(plan_lib.plan(Peephole(64), (2, 32, 8)).declined)["native"]
    )
    assert takes(Declared(64)) == native.available()


@pytest.mark.slow
@needs_kernel
def test_a_failed_build_warns_and_runs_the_xla_scan(monkeypatch, tmp_path):
    """A kernel source that does not compile (or an unwritable cache): a RuntimeWarning that
    says what failed, and the XLA scan, not an error."""
    bad = tmp_path / "broken.cc"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(native, "SOURCE", bad)
    monkeypatch.setenv("RNNLAB_NATIVE_CACHE", str(tmp_path / "cache"))
    native._library.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="broken.cc"):
            assert not native.available()
        cell, params, xs, carry, *_, w_out = setup(64)
        got = loss_and_grads(cell, params, xs, carry, w_out, "fused")
        assert_close(got, loss_and_grads(cell, params, xs, carry, w_out, "autodiff"))
    finally:
        native._library.cache_clear()


@needs_kernel
@pytest.mark.parametrize("name", CELLS)
def test_nan_propagates_as_in_the_xla_scan(name):
    """A NaN input poisons its sequence from that step on, in the kernel as in XLA: a
    diverging run must show NaN, not a finite clamp."""
    cell, params, xs, carry, *_ = setup(64, name=name)
    xs = xs.at[1, 4, 0].set(jnp.nan)
    got = unroll(cell, params, xs, carry, backward="fused")[1]
    want = unroll(cell, params, xs, carry, backward="autodiff")[1]
    np.testing.assert_array_equal(np.isnan(np.asarray(got)), np.isnan(np.asarray(want)))
    assert bool(jnp.isnan(got[1, 4:]).all()) and not bool(jnp.isnan(got[0]).any())


@needs_kernel
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.slow
def test_masked_sequences_equal_the_autodiff_scan(monkeypatch, name, reverse):
    """seq_lengths (right-padded sequences, one of them empty, one full): the kernel runs every
    step and the engine masks after; outputs, final carry, perturbation gradients and parameter
    gradients equal the autodiff scan's, also in reverse."""
    calls = []
    count_calls(monkeypatch, name, calls)
    cell, params, xs, carry, ids, table, w_out = setup(64, name=name, seed=3)
    lengths = jnp.array([T, 0, 5, 1, T - 2])
    key = jax.random.PRNGKey(7)
    eps = jax.tree.map(lambda c: 0.1 * jax.random.normal(key, (B, T) + c.shape[1:]), carry)

    def grads(backward):
        def loss(params, carry, xs, eps):
            final, ys, _ = unroll(
                cell, params, xs, carry, seq_lengths=lengths, reverse=reverse,
                perturbation=eps, backward=backward,
            )  # fmt: skip
            return objective(final, ys, w_out)

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))(params, carry, xs, eps)

    got = grads("fused")
    assert calls
    assert_close(got, grads("autodiff"))


def test_several_devices_run_the_xla_scan(monkeypatch):
    """Under a data-parallel mesh XLA would gather the batch onto every device around a custom
    call (it cannot partition one), so with more than one device the engine keeps the scan."""
    assert takes(make_cell("lstm", 64)) == native.available()
    monkeypatch.setattr(jax, "device_count", lambda *a: 2)
    assert not takes(make_cell("lstm", 64))
