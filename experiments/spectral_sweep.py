"""spectral-sweep: tanh RNN, recurrent spectral radius 0.5 -> 1.5: gradient decay and Lyapunov.

Command:
    rnnlab run spectral-sweep           # full: 21 radii, H=128, T=200, 16 driven sequences
    rnnlab run spectral-sweep:smoke     # seconds; what the test suite runs
    Options: experiment.radii="(0.5, 1.0, 1.5)", experiment.input_stds="(0.0,)" (0: the
    autonomous map), model.hidden_size=256, data.seq_length=400

What it does (no training): for each radius r, an Elman tanh cell with W_h ~ N(0, 1/H)
rescaled to spectral radius exactly r (``recurrent_init=gaussian``; one draw for every r),
zero bias, from a random N(0, 1) initial state, driven by ``input_std * N(0, 1)`` inputs of
D=4 features through its (LeCun-normal) input weights, for each input_std in
``experiment.input_stds`` (0 and 1):

* the gradient decay rate: minus the least-squares slope of log ||dL/dh_t|| against the lag,
  for L = sum(h_{T-1}) (rnnlab.probes.grad_norms; nats per step, > 0 = vanishing);
* the top Lyapunov exponent lambda_1 by the QR method (rnnlab.probes.lyapunov; k=1 JVP per step,
  warm-up T/4 steps), nats per step;
* the linear prediction log r (tanh'(0) = 1: the map's linearization at h = 0).

Figure figures/spectral_sweep.png: -decay rate, lambda_1 and log r against r; data beside it.
results.json: the table and the radius where lambda_1 crosses 0 (linear interpolation).

Expected runtime (2 CPU cores): full ~1-2 minutes (measured 78 s on a shared machine);
smoke: seconds.

Expected result (Pascanu, Mikolov & Bengio 2013; Engelken, Wolf & Abbott 2023; REFERENCE.md):
gradients vanish (decay > 0, lambda_1 < 0) below r = 1 and stop vanishing above it; with no
input lambda_1 ~ log r for r < 1 (g = 0.5 gives log 0.5), crossing 0 near r = 1 (the
autonomous tanh map is chaotic above, e.g. +0.06 at g = 1.5, N = 200). Input drive pushes the
units into saturation (tanh' < 1), which contracts: the crossing moves above 1. For a deep
enough history -decay and lambda_1 agree (both are the growth rate of the top singular value
of the Jacobian products), while log r is only the h = 0 linearization.

Measured (full run, seed 0, H=128, T=200, ``rnnlab run spectral-sweep``; nats/step;
figure docs/figures/spectral_sweep.png):

    r     autonomous: -decay  lambda_1   log r   |  input std 1: -decay  lambda_1
    0.50  -0.715  -0.697  -0.693                 |  -1.074  -1.078
    0.90  -0.111  -0.109  -0.105                 |  -0.525  -0.537
    1.00  -0.010  -0.007   0.000                 |  -0.439  -0.447
    1.20   0.010   0.003   0.182                 |  -0.292  -0.300
    1.50   0.056   0.050   0.405                 |  -0.119  -0.139

Autonomous map: lambda_1 = log r to within 0.005 below r = 1, zero crossing at r = 1.15
(gradient decay at 1.05), lambda_1(1.5) = +0.050 (REFERENCE: +0.06 at N = 200). The
gradient decay rate and lambda_1 agree to ~0.01 everywhere. Above r = 1 both stay far below
log r: the state leaves h = 0 and saturates. Driven by unit-variance inputs, the network is
contracting over the whole range (lambda_1 = -0.14 at r = 1.5): input-driven saturation
moves the vanishing/exploding boundary beyond r = 1.5.
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import config as config_lib
from rnnlab import probes, study
from rnnlab.engine import make_cell
from rnnlab.viz import plots

VARIANTS = ("default", "smoke")
#: the only keys this measurement reads (it trains nothing and fixes the elman tanh cell);
#: any other key set away from this file's config is refused (rnnlab.registry.resolve)
READS = ("seed", "model.hidden_size", "data.seq_length", "data.batch_size", "experiment")


def get_config(variant: str | None = None):
    c = config_lib.get_config()
    c.model.cell = "elman"
    c.model.hidden_size = 128
    c.data.seq_length = 200
    c.data.batch_size = 16
    radii = tuple(float(r) for r in np.round(np.linspace(0.5, 1.5, 21), 3))
    study.with_section(c, radii=radii, input_stds=(0.0, 1.0), input_dim=4)
    if variant == "smoke":
        c.model.hidden_size = 16
        c.data.seq_length = 20
        c.data.batch_size = 2
        c.experiment.radii = (0.5, 1.0, 1.5)
    return c


def _final_sum(ys, final):  # L = sum_i h_{T-1, i}: module level so jit caches one program
    return jnp.sum(final, axis=-1)


def measure(config, radius: float, input_std: float) -> dict:
    H, T, B = config.model.hidden_size, config.data.seq_length, config.data.batch_size
    D = config.experiment.input_dim
    # One cell (radius 1) for every r, W_h scaled by r: the same matrix direction across the
    # sweep, and one compiled program per probe instead of one per radius.
    cell = make_cell("elman", H, {"recurrent_init": "gaussian", "recurrent_scale": 1.0})
    k_param, k_x, k_h = jax.random.split(jax.random.key(config.seed), 3)
    params = cell.init(k_param, jnp.zeros((1, H)), jnp.zeros((1, D)))
    params["params"]["input"]["bias"] = jnp.zeros(H)
    params["params"]["w_h"] = radius * params["params"]["w_h"]
    xs = input_std * jax.random.normal(k_x, (B, T, D))
    h0 = jax.random.normal(k_h, (B, H))
    g = np.asarray(probes.cell_grad_norms(cell, params, xs, _final_sum, h0)["total"])
    lam = float(probes.cell_lyapunov(cell, params, xs, k=1, warmup=T // 4, carry=h0)[0])
    return {"radius": radius, "input_std": input_std, "grad_decay": probes.decay_rate(g), "lyapunov_1": lam,
            "log_radius": float(np.log(radius)), "grad_first_over_last": float(g[0] / g[-1])}  # fmt: skip


def crossing(x, y) -> float | None:
    """The first x where y goes from < 0 to >= 0 (linear interpolation), or None."""
    for i in range(len(y) - 1):
        if y[i] < 0 <= y[i + 1]:
            return float(x[i] + (x[i + 1] - x[i]) * (-y[i]) / (y[i + 1] - y[i]))
    return None


def run(config, workdir) -> dict:
    H, T = config.model.hidden_size, config.data.seq_length
    series, styles, rows, out = {}, {}, [], {}
    shades = ("#d62728", "#ff9896", "#7f0000", "#ffbb78")
    for i, std in enumerate(config.experiment.input_stds):
        part = [measure(config, r, std) for r in config.experiment.radii]
        rows += part
        r = np.array([row["radius"] for row in part])
        decay = np.array([row["grad_decay"] for row in part])
        lam = np.array([row["lyapunov_1"] for row in part])
        a, b = f"-gradient decay rate, input std {std:g}", f"lambda_1, input std {std:g}"
        series[a], series[b] = (r, -decay), (r, lam)
        styles[a] = {"marker": "o", "markersize": 3, "color": shades[i % 4]}
        styles[b] = {"linestyle": "--", "marker": "s", "markersize": 3, "color": shades[i % 4]}
        out[f"lyapunov_zero_crossing_radius_std{std:g}"] = crossing(r, lam)
        out[f"gradient_zero_crossing_radius_std{std:g}"] = crossing(r, -decay)
    r = np.array(config.experiment.radii)
    series["log r (linearization at h=0)"] = (r, np.log(r))
    styles["log r (linearization at h=0)"] = {"color": "black", "linestyle": ":"}
    plots.lines(
        series,
        pathlib.Path(workdir) / "figures" / "spectral_sweep.png",
        xlabel="spectral radius r of W_h",
        ylabel="nats per step",
        title=f"tanh RNN (elman), H={H}, T={T}",
        styles=styles,
        hlines={"0: vanishing below, exploding above": 0.0},
        notes={"rows": rows},
    )
    table = ["| input std | radius | -grad decay (nats/step) | lambda_1 (nats/step) | log r |",
             "|---|---|---|---|---|"]  # fmt: skip
    table += [
        f"| {x['input_std']:g} | {x['radius']:.2f} | {-x['grad_decay']:.4f} | "
        f"{x['lyapunov_1']:.4f} | {x['log_radius']:.4f} |"
        for x in rows
    ]
    return {"rows": rows, **out, "table": "\n".join(table)}
