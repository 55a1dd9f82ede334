"""The cell conformance suite: checks that any cell obeying the contract in :mod:`rnnlab.cells`
works with the engine. Run them all on a new cell with

    import rnnlab.conformance
    rnnlab.conformance.check_cell("mycell")        # a registry name or a Cell class

Each check is a plain function ``check_<name>(cell)`` that returns ``None`` or raises
``AssertionError`` naming the cell, the check and what differed. :data:`CHECKS` lists them; the
test suite runs every check on every registered cell (``tests/test_conformance.py``). Cells are
built from ``hidden_size`` (and ``dtype``/``param_dtype``) only, so every cell can be checked.

Shape legend: ``B`` batch, ``T`` time, ``D`` input, ``H`` hidden, ``O`` cell output. Sizes are
tiny (B <= 4, T <= 7, D = 3, H = 4) so the whole suite runs in seconds.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import cells as cell_registry
from rnnlab.engine import RNN, make_cell, unroll
from rnnlab.engine import plan as plan_lib
from rnnlab.engine.contract import capabilities

B, T, D, H = 2, 5, 3, 4
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


# ------------------------------------------------------------------------------ helpers


def _cls(cell) -> type:
    return cell_registry.get(cell) if isinstance(cell, str) else cell


def _label(cell) -> str:
    return repr(cell) if isinstance(cell, str) else f"{cell.__module__}.{cell.__name__}"


def _assert(ok: bool, cell, check: str, message: str) -> None:
    if not ok:
        raise AssertionError(f"cell {_label(cell)} fails the {check!r} check: {message}")


def _assert_close(cell, check, what, got, want, rtol=1e-5, atol=1e-5) -> None:
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    _assert(
        jax.tree.structure(got) == jax.tree.structure(want),
        cell,
        check,
        f"{what}: pytree structures differ: {jax.tree.structure(got)} vs "
        f"{jax.tree.structure(want)}",
    )
    for i, (g, w) in enumerate(zip(got_leaves, want_leaves)):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        _assert(g.shape == w.shape, cell, check, f"{what} leaf {i}: shape {g.shape} vs {w.shape}")
        err = np.abs(g - w)
        if (err > atol + rtol * np.abs(w)).any() or not np.isfinite(g).all():
            at = np.unravel_index(np.nanargmax(np.where(np.isfinite(err), err, np.inf)), err.shape)
            _assert(
                False,
                cell,
                check,
                f"{what} leaf {i}: max |difference| {np.max(err):.3g} "
                f"(rtol {rtol}, atol {atol}) at index {at}",
            )


@functools.lru_cache(maxsize=256)
def _variables(cls: type, param_dtype, seed: int, d_in: int = D):
    """The cell's variables for ``d_in`` input features (cached: the checks share them).

    Initialized eagerly: op-by-op dispatch reuses XLA executables across cells (same shapes),
    which is much cheaper than compiling each cell's whole init (QR for orthogonal blocks).
    Every parameter is then jittered by ``0.05 * N(0, 1)`` so zero-initialized biases are
    exercised.
    """
    module = make_cell(cls, H, None, param_dtype=param_dtype)
    x0 = jnp.zeros((1, d_in), param_dtype)
    variables = module.init(jax.random.key(seed), module.initialize_carry(None, (1, d_in)), x0)
    rng = np.random.default_rng(seed)
    noise = lambda a: np.asarray(0.05 * rng.standard_normal(a.shape)).astype(a.dtype)
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a) + noise(a)), variables)


def build(cell, *, dtype=jnp.float32, param_dtype=jnp.float32, batch=B, length=T, seed=0):
    """``(module, variables, xs [batch, length, D])`` for ``cell`` with hidden size ``H``.

    The variables do not depend on ``dtype`` (the computation dtype): a bfloat16 module runs
    with the same float32 params as the float32 one. ``xs ~ N(0, 1)`` comes from numpy.
    """
    cls = _cls(cell)
    module = make_cell(cls, H, None, dtype=dtype, param_dtype=param_dtype)
    variables = _variables(cls, param_dtype, seed)
    rng = np.random.default_rng(seed)
    xs = jnp.asarray(rng.standard_normal((batch, length, D)), param_dtype)
    return module, variables, xs.astype(dtype or param_dtype)


def _random_carry(module, batch, seed):
    """A carry like ``initialize_carry``'s, filled with ``0.5 * N(0, 1)`` (numpy: no compile)."""
    rng = np.random.default_rng(seed)
    fill = lambda z: jnp.asarray(0.5 * rng.standard_normal(z.shape), z.dtype)
    return jax.tree.map(fill, module.initialize_carry(None, (batch, D)))


def _stack(*trees):
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


@contextlib.contextmanager
def count_compiles():
    """Count XLA backend compilations inside the block: ``with count_compiles() as n: ...; n[0]``."""
    count = [0]

    def listener(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            count[0] += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


# ------------------------------------------------------------------------------- checks


def check_shapes_and_dtypes(cell) -> None:
    """Output ``[B, T, O]`` and carry shapes; float32 and bfloat16 computation via ``dtype``
    (outputs and carry in that dtype, params in ``param_dtype`` float32)."""
    name = "shapes and dtypes"
    dtypes = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    modules = {}
    for key, dtype in dtypes.items():
        module, variables, xs = build(cell, dtype=dtype)
        modules[key] = module
        O = module.output_size
        _assert(isinstance(O, int) and O > 0, cell, name, f"output_size must be an int, got {O}")
        shapes = jax.eval_shape(  # abstract: the params a dtype=bfloat16 cell makes
            module.init, jax.random.key(0), module.initialize_carry(None, (1, D)), xs[:, 0]
        )
        for path, leaf in jax.tree_util.tree_leaves_with_path(shapes):
            if jnp.issubdtype(leaf.dtype, jnp.floating):
                _assert(
                    leaf.dtype == jnp.float32,
                    cell,
                    name,
                    f"dtype={dtype.__name__}: param {jax.tree_util.keystr(path)} is "
                    f"{leaf.dtype}, expected param_dtype float32",
                )

    @jax.jit
    def run(v, x):
        return {k: unroll(m, v, x.astype(dtypes[k]))[:2] for k, m in modules.items()}

    results = run(variables, xs.astype(jnp.float32))
    for key, (carry, ys) in results.items():
        dtype = dtypes[key]
        O, zeros = modules[key].output_size, modules[key].initialize_carry(None, (B, D))
        _assert(ys.shape == (B, T, O), cell, name, f"outputs {ys.shape}, expected {(B, T, O)}")
        _assert(ys.dtype == dtype, cell, name, f"dtype={dtype.__name__}: outputs are {ys.dtype}")
        for z, c in zip(jax.tree.leaves(zeros), jax.tree.leaves(carry)):
            _assert(
                c.shape == z.shape and c.dtype == z.dtype and z.shape[0] == B,
                cell,
                name,
                f"dtype={dtype.__name__}: final carry leaf {c.shape} {c.dtype} vs "
                f"initialize_carry {z.shape} {z.dtype}",
            )
        ok = bool(np.isfinite(np.asarray(ys, np.float32)).all())
        _assert(ok, cell, name, f"dtype={dtype.__name__}: non-finite outputs")
    # bfloat16 keeps ~3 significant digits: a coarse agreement check only.
    _assert_close(
        cell,
        name,
        "bfloat16 vs float32 outputs",
        np.asarray(results["bfloat16"][1], np.float32),
        results["float32"][1],
        rtol=0.05,
        atol=0.05,
    )


def check_jit_and_vmap(cell) -> None:
    """Under ``jit``: ``vmap`` over an extra input axis and over stacked params (an ensemble)
    equals the per-example results."""
    name = "jit and vmap"
    module, variables, xs = build(cell)
    _, other, _ = build(cell, seed=1)
    f = lambda v, x: unroll(module, v, x)[:2]

    @jax.jit
    def run(v1, v2, x):
        xs2 = jnp.stack([x, 2.0 * x])  # [2, B, T, D]
        return {
            "vmap over inputs": (jax.vmap(f, (None, 0))(v1, xs2), _stack(f(v1, x), f(v1, 2.0 * x))),
            "vmap over params": (
                jax.vmap(f, (0, None))(_stack(v1, v2), x),
                _stack(f(v1, x), f(v2, x)),
            ),
        }

    for what, (got, want) in run(variables, other, xs).items():
        _assert_close(cell, name, what, got, want)


def check_scan_matches_loop(cell) -> None:
    """The engine (hoisted projection + ``lax.scan`` over ``step``) equals a plain Python loop
    over the one-step cell ``__call__`` -- the reference, the only Python loop over time allowed.
    Cells with the linear form: ``readout`` of ``h_t = a_t * h_{t-1} + b_t`` (a loop) and the
    engine's associative scan match too."""
    name = "scan matches loop"
    module, variables, xs = build(cell, length=T + 2)
    carry0 = _random_carry(module, B, seed=7)
    linear = hasattr(module, "linear_coeffs") and hasattr(module, "readout")
    associative = linear and "scan" in inspect.signature(unroll).parameters

    def loop(v, x, carry):
        ys, states = [], []
        for t in range(x.shape[1]):
            carry, y = module.apply(v, carry, x[:, t])
            ys.append(y)
            states.append(carry)
        stack = lambda *a: jnp.stack(a, axis=1)
        return carry, jnp.stack(ys, axis=1), jax.tree.map(stack, *states)

    def linear_loop(v, x):
        xp = module.apply(v, x, method="project")
        a, b = module.apply(v, xp, method="linear_coeffs")
        a = jnp.broadcast_to(a, b.shape)
        h, hs = jnp.zeros_like(b[:, 0]), []
        for t in range(x.shape[1]):
            h = a[:, t] * h + b[:, t]
            hs.append(h)
        return module.apply(v, jnp.stack(hs, axis=1), xp, method="readout")

    @jax.jit
    def run(v, x, c):
        out = {
            "(final carry, outputs, states)": (
                unroll(module, v, x, c, return_states=True),
                loop(v, x, c),
            )
        }
        if linear:
            out["linear form (linear_coeffs/readout)"] = (
                unroll(module, v, x)[1],
                linear_loop(v, x),
            )
        if associative:
            got = unroll(module, v, x, c, return_states=True, scan="associative")
            out["engine's associative scan"] = (got, out["(final carry, outputs, states)"][1])
        return out

    for what, (got, want) in run(variables, xs, carry0).items():
        _assert_close(cell, name, what, got, want)


def check_gradients(cell) -> None:
    """Reverse-mode gradients (params and inputs) equal central finite differences in float64,
    along 3 random directions, through a masked unroll (``seq_lengths``)."""
    name = "finite-difference gradients"
    with jax.enable_x64(True):
        # the float32 variables cast to float64 (no second init to compile)
        module = make_cell(_cls(cell), H, None, param_dtype=jnp.float64)
        wide = lambda a: jnp.asarray(np.asarray(a).astype(np.result_type(a.dtype, np.float64)))
        variables = jax.tree.map(wide, _variables(_cls(cell), jnp.float32, 0))
        xs = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, D)))
        lengths = jnp.array([T, T - 2])
        rng = np.random.default_rng(3)
        w_y = jnp.asarray(rng.standard_normal((B, T, module.output_size)))
        w_c = jax.tree.leaves(_random_carry(module, B, seed=4))
        theta = (variables, xs)
        leaves, tree = jax.tree.flatten(theta)
        directions = [
            tree.unflatten([jnp.asarray(rng.standard_normal(a.shape), a.dtype) for a in leaves])
            for _ in range(3)
        ]
        eps = 1e-6

        def loss(theta):
            v, x = theta
            carry, ys, _ = unroll(module, v, x, seq_lengths=lengths)
            dots = [jnp.sum(jnp.real(c * w)) for c, w in zip(jax.tree.leaves(carry), w_c)]
            return jnp.sum(ys * w_y) + sum(dots)

        @jax.jit
        def run(theta, dirs):
            grad = jax.grad(loss)(theta)
            # <grad, v>; for complex leaves JAX's grad is conj-convention: Re(sum(g * v)).
            dot = lambda d: sum(
                jnp.sum(jnp.real(g * e)) for g, e in zip(jax.tree.leaves(grad), jax.tree.leaves(d))
            )
            step = lambda d, s: jax.tree.map(lambda a, e: a + s * eps * e, theta, d)
            fd = lambda d: (loss(step(d, 1.0)) - loss(step(d, -1.0))) / (2 * eps)
            return jax.vmap(dot)(dirs), jax.vmap(fd)(dirs)

        dots, fds = run(theta, _stack(*directions))
        for dot, fd in zip(np.asarray(dots), np.asarray(fds)):
            _assert(
                abs(fd - dot) <= 1e-6 * (1.0 + abs(fd)),
                cell,
                name,
                f"directional derivative: autodiff {dot:.10g} vs finite difference {fd:.10g}",
            )


def check_masking(cell) -> None:
    """With ``seq_lengths``, each sequence's outputs and final carry equal running it alone
    (forward and ``reverse``); padded outputs are zero; a length-0 sequence keeps its carry."""
    name = "masking"
    lengths = (T, 2, 0)
    module, variables, xs = build(cell, batch=len(lengths))
    carry0 = _random_carry(module, len(lengths), seed=5)
    row = lambda tree, b: jax.tree.map(lambda a: a[b : b + 1], tree)

    @jax.jit
    def run(v, x, c):
        out = {}
        for reverse in (False, True):
            kw = dict(reverse=reverse)
            masked = unroll(module, v, x, c, seq_lengths=jnp.array(lengths), **kw)[:2]
            alone = [
                unroll(module, v, x[b : b + 1, :L], row(c, b), **kw)[:2] if L else None
                for b, L in enumerate(lengths)
            ]
            out[reverse] = masked, alone
        return out

    for reverse, ((carry, ys), alone) in run(variables, xs, carry0).items():
        for b, L in enumerate(lengths):
            what = f"sequence {b} (length {L}, reverse={reverse})"
            _assert_close(cell, name, f"padded outputs of {what}", ys[b, L:], 0 * ys[b, L:])
            if L == 0:
                _assert_close(cell, name, f"final carry of {what}", row(carry, b), row(carry0, b))
                continue
            _assert_close(cell, name, f"outputs of {what} vs alone", ys[b : b + 1, :L], alone[b][1])
            _assert_close(cell, name, f"final carry of {what} vs alone", row(carry, b), alone[b][0])


def check_stacked_and_bidirectional(cell) -> None:
    """``RNN(cell, num_layers=2, bidirectional=True)`` with ``seq_lengths`` and
    ``return_states``: params ``layer_{l}/{fwd,bwd}`` (layer 1 reads ``2O`` features), outputs
    ``[B, T, 2O]``, one ``(fwd, bwd)`` final carry per layer shaped like ``initialize_carry``,
    states ``[B, T, ...]``; a residual stack keeps ``[B, T, O]``. Abstract evaluation
    (``jax.eval_shape``): nothing is compiled; the values are the other checks' business."""
    name = "stacked and bidirectional"
    cls = _cls(cell)
    module, _, xs = build(cell)
    O, zeros = module.output_size, module.initialize_carry(None, (B, D))
    key, lengths = jax.random.key(0), jnp.array([T, 2])
    bi = RNN(cls, H, num_layers=2, bidirectional=True)
    variables = jax.eval_shape(bi.init, key, xs, lengths)
    kernel_rows = lambda l, d: {
        leaf.shape[0]
        for leaf in jax.tree.leaves(variables["params"][f"layer_{l}"][d])
        if leaf.ndim == 2
    }
    _assert(
        set(variables["params"]) == {"layer_0", "layer_1"}
        and all(set(variables["params"][f"layer_{l}"]) == {"fwd", "bwd"} for l in (0, 1))
        and 2 * O in kernel_rows(1, "fwd") | kernel_rows(1, "bwd"),
        cell,
        name,
        f"params {jax.tree.map(lambda a: a.shape, variables)}: expected layer_0/layer_1 with "
        f"fwd/bwd each, and a layer-1 kernel reading 2O = {2 * O} features",
    )
    out = jax.eval_shape(lambda v: bi.apply(v, xs, lengths, return_states=True), variables)
    _assert(
        out.outputs.shape == (B, T, 2 * O) and out.outputs.dtype == xs.dtype,
        cell,
        name,
        f"outputs {out.outputs.shape} {out.outputs.dtype}, expected {(B, T, 2 * O)} {xs.dtype}",
    )
    _assert(
        len(out.final_carry) == 2 and len(out.states) == 2,
        cell,
        name,
        "expected one final carry and one states entry per layer",
    )
    for layer in range(2):
        for d in range(2):
            final, states = out.final_carry[layer][d], out.states[layer][d]
            for z, c, s in zip(*map(jax.tree.leaves, (zeros, final, states))):
                _assert(
                    c.shape == z.shape and s.shape == (B, T, *z.shape[1:]),
                    cell,
                    name,
                    f"layer {layer} direction {d}: final carry {c.shape} / states "
                    f"{s.shape}, expected {z.shape} / {(B, T, *z.shape[1:])}",
                )
    res = RNN(cls, H, num_layers=2, residual=True)
    ys = jax.eval_shape(lambda: res.apply(res.init(key, xs), xs).outputs)
    _assert(ys.shape == (B, T, O), cell, name, f"residual stack outputs {ys.shape}")


def check_one_compile_per_shape(cell) -> None:
    """Repeated calls of a jitted ``RNN.apply`` with new values but the same shapes (inputs,
    params, seq_lengths) trace and compile once; a new sequence length compiles once more."""
    name = "one compile per shape"
    module, variables, xs = build(cell)
    _, other, _ = build(cell, seed=1)
    rnn = RNN(_cls(cell), H)
    as_rnn = lambda v: {"params": {"layer_0": {"fwd": v}}}  # RNN params of one layer
    traces = [0]

    def apply(v, x, n):
        traces[0] += 1
        return rnn.apply(v, x, n).outputs

    f = jax.jit(apply)
    rng = np.random.default_rng(0)
    calls = [
        (as_rnn(v), jnp.asarray(rng.standard_normal(xs.shape), xs.dtype), jnp.array(n))
        for v in (variables, other)
        for n in ([T, 1], [2, 3], [0, T])
    ]
    longer = [jnp.asarray(rng.standard_normal((B, 2 * T, D)), xs.dtype) for _ in range(2)]
    f(*calls[0]).block_until_ready()
    with count_compiles() as compiles:
        for call in calls:
            f(*call).block_until_ready()
    _assert(
        traces[0] == 1 and compiles[0] == 0,
        cell,
        name,
        f"{len(calls)} repeated calls traced {traces[0]} times and compiled {compiles[0]} "
        "times (expected 1 trace in all and no new compile)",
    )
    with count_compiles() as compiles:
        for x, n in zip(longer, ([2 * T, T], [1, 2 * T])):
            f(calls[0][0], x, jnp.array(n)).block_until_ready()
    _assert(
        traces[0] == 2 and compiles[0] == 1,
        cell,
        name,
        f"a new length T traced {traces[0] - 1} more times and compiled {compiles[0]} times "
        "(expected once)",
    )


def check_compile_independent_of_T(cell) -> None:
    """The lowered program (forward and backward) does not grow with T: its StableHLO for
    T=1000 has at most 3x the operations of T=10 (a scan, not an unrolled loop; an
    associative scan may add O(log T) levels). Compares program size, never wall time."""
    name = "compile independent of T"
    module = make_cell(_cls(cell), H, None, dtype=jnp.float32)
    variables = jax.eval_shape(
        module.init, jax.random.key(0), module.initialize_carry(None, (1, D)), jnp.zeros((1, D))
    )

    def loss(v, x):
        carry, ys, _ = unroll(module, v, x)
        return jnp.sum(ys**2) + sum(jnp.sum(jnp.real(c) ** 2) for c in jax.tree.leaves(carry))

    sizes = {}
    for length in (10, 1000):
        xs = jax.ShapeDtypeStruct((B, length, D), jnp.float32)
        text = jax.jit(jax.value_and_grad(loss)).lower(variables, xs).as_text()
        sizes[length] = sum(1 for line in text.splitlines() if " = " in line)
    _assert(
        sizes[1000] <= 3 * sizes[10],
        cell,
        name,
        f"StableHLO has {sizes[10]} ops for T=10 and {sizes[1000]} for T=1000",
    )


def check_fast_loops(cell) -> None:
    """Every faster loop the cell declares equals the autodiff loop, at a size where the plan
    takes it: the fused backward (the fused contract) at ``H = THRESHOLDS["fused_min_hidden"]``
    with ``backward="auto"``, the associative scan (the linear form) with ``scan="associative"``;
    values and gradients (params, inputs, initial carry, a carry perturbation) to 1e-5, with
    masking and reverse. A cell that declares neither passes (it runs the autodiff loop)."""
    name = "fast loops"
    caps = capabilities(make_cell(_cls(cell), H))
    runs = []
    if caps.fused:
        runs.append((plan_lib.THRESHOLDS["fused_min_hidden"], {}, ("fused", "native")))
    if caps.linear:
        runs.append((H, {"scan": "associative"}, ("associative",)))
    for size, options, loops in runs:
        module = make_cell(_cls(cell), size)
        rng = np.random.default_rng(5)
        xs = jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32)
        zero = module.initialize_carry(None, (B, D))
        variables = module.init(jax.random.key(5), zero, xs[:, 0])
        fill = lambda z: jnp.asarray(0.3 * rng.standard_normal(z.shape), z.dtype)
        variables = jax.tree.map(lambda a: a + fill(a), variables)
        carry = jax.tree.map(fill, zero)
        eps = jax.tree.map(lambda z: fill(jnp.zeros((B, T) + z.shape[1:], z.dtype)), zero)
        lengths = jnp.array([T, T - 2])
        got = plan_lib.plan(module, (B, T, D), options=plan_lib.Options(**options)).loop
        _assert(got in loops, cell, name, f"the plan took {got!r} at H={size}, not {loops}")
        w_y = jnp.asarray(rng.standard_normal((B, T, module.output_size)), jnp.float32)

        def loss(theta, **kw):
            v, x, c, e = theta
            final, ys, _ = unroll(
                module, v, x, c, seq_lengths=lengths, reverse=True, perturbation=e, **kw
            )
            return jnp.sum(jnp.tanh(ys) * w_y) + sum(jnp.sum(a**2) for a in jax.tree.leaves(final))

        theta = (variables, xs, carry, eps)
        want = jax.jit(
            jax.value_and_grad(functools.partial(loss, backward="autodiff", scan="sequential"))
        )(theta)
        have = jax.jit(jax.value_and_grad(functools.partial(loss, **options)))(theta)
        _assert_close(cell, name, f"the {got} loop vs autodiff (loss, gradients)", have, want)


def check_probe_contract(cell) -> None:
    """What the probes need: the perturbation hook reads ``y_t`` from the perturbed carry, so
    ``y_t`` must be a leaf of the new carry, or the cell defines ``output(carry, xp_t)``, which
    must then give ``step``'s own ``y_t``."""
    name = "probe contract"
    module, variables, xs = build(cell)
    eps = jax.tree.map(lambda z: jnp.zeros((B, T) + z.shape[1:], z.dtype),
                       module.initialize_carry(None, (B, D)))  # fmt: skip
    try:
        jax.eval_shape(lambda v, x, e: unroll(module, v, x, perturbation=e), variables, xs, eps)
    except ValueError as err:
        _assert(False, cell, name, f"the gradient-flow probes cannot run on it: {err}")
    if hasattr(type(module), "output"):
        carry = _random_carry(module, B, seed=6)
        xp = module.apply(variables, xs[:, 0], method="project")
        new, y = module.apply(variables, carry, xp, method="step")
        again = module.apply(variables, new, xp, method="output")
        _assert_close(cell, name, "output(new carry, xp_t) vs step's y_t", again, y)


def loops(cell) -> list[str]:
    """Which loops ``cell`` can take, one line each, with what it needs or why not (from its
    declarations, :mod:`rnnlab.engine.contract`; the plan adds sizes and devices)."""
    caps = capabilities(make_cell(_cls(cell), plan_lib.THRESHOLDS["fused_min_hidden"]))
    least = plan_lib.THRESHOLDS["fused_min_hidden"]
    yes = lambda why, text: f"yes ({text})" if why is None else f"no: {why}"
    native = caps.native
    return [
        "autodiff scan: yes (the reference)",
        f"fused backward: {yes(caps.fused_why, f'backward=auto from H={least}')}",
        "native kernel: "
        + (f"yes ({native.kernel} kernel, {native.gates})" if native else f"no: {caps.native_why}"),
        f"associative scan: {yes(caps.linear_why, 'scan=associative; auto from long T off CPU')}",
        "probes: y_t "
        + ("from output(carry, xp_t)" if caps.output == "output()" else "is a leaf of the carry"),
    ]


CHECKS: dict[str, Callable] = {
    "shapes_and_dtypes": check_shapes_and_dtypes,
    "jit_and_vmap": check_jit_and_vmap,
    "scan_matches_loop": check_scan_matches_loop,
    "gradients": check_gradients,
    "masking": check_masking,
    "stacked_and_bidirectional": check_stacked_and_bidirectional,
    "one_compile_per_shape": check_one_compile_per_shape,
    "compile_independent_of_T": check_compile_independent_of_T,
    "fast_loops": check_fast_loops,
    "probe_contract": check_probe_contract,
}


def check_cell(cell) -> None:
    """Run every check in :data:`CHECKS` on ``cell`` (a registry name or a ``Cell`` class).

    Raises:
      AssertionError: the first failing check, naming the cell, the check and the difference.
      KeyError: an unknown cell name (the message lists the known names).
    """
    _cls(cell)  # unknown names fail here with the registry's message
    print(f"cell {_label(cell)} can take:")
    for line in loops(cell):
        print(f"  {line}")
    for check in CHECKS.values():
        check(cell)
