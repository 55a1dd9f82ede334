# %% [markdown]
# # Vanishing and exploding gradients, measured
#
# A recurrent network applies the same map at every step, so a gradient that travels back
# $k$ steps is multiplied by $k$ step Jacobians. This notebook derives what that product does,
# then measures it with rnnlab's probes:
#
# 1. the math of $\partial h_T / \partial h_t$ in a few lines;
# 2. per-step gradient norms $\lVert \partial L / \partial h_t \rVert$ of untrained cells
#    (Elman/tanh, LSTM, GRU) and the singular values of the Jacobian products;
# 3. the same cells **after training** on the adding problem (the `vanishing` experiment);
# 4. the **spectral-radius sweep**: a tanh RNN going from vanishing to exploding as the
#    spectral radius of its recurrent matrix crosses 1;
# 5. the **Lyapunov spectrum**, the growth rates of all directions at once.
#
# The committed outputs come from a real run of a few minutes on a 2-core CPU; the test suite
# re-runs the notebook with `RNNLAB_NOTEBOOK_SMOKE=1` (tiny sizes, same code).

# %% [markdown]
# ## 1. The math
#
# An Elman network updates its state with $h_t = \phi(a_t)$, $a_t = W h_{t-1} + U x_t + b$.
# By the chain rule the state at the end depends on an earlier state through a product of
# step Jacobians:
#
# $$
# \frac{\partial h_T}{\partial h_t} \;=\; \prod_{k=t+1}^{T} \frac{\partial h_k}{\partial h_{k-1}}
# \;=\; \prod_{k=t+1}^{T} \operatorname{diag}\!\big(\phi'(a_k)\big)\, W ,
# \qquad
# \frac{\partial L}{\partial h_t} = \Big(\frac{\partial h_T}{\partial h_t}\Big)^{\!\top} \frac{\partial L}{\partial h_T}.
# $$
#
# With $\gamma = \max|\phi'|$ ($\gamma = 1$ for tanh) every factor has norm at most
# $\gamma\,\sigma_{\max}(W)$, so
#
# $$
# \Big\lVert \frac{\partial h_T}{\partial h_t} \Big\rVert \;\le\; \big(\gamma\,\sigma_{\max}(W)\big)^{T-t}.
# $$
#
# If $\sigma_{\max}(W) < 1/\gamma$ the gradient **vanishes** exponentially in the lag $T-t$
# (Bengio et al. 1994; Pascanu, Mikolov & Bengio 2013); it can only **explode** if the
# spectral radius $\rho(W)$ exceeds $1/\gamma$. Saturated units ($\phi' \approx 0$) make it
# vanish faster still. The long-run rate is the top **Lyapunov exponent**
# $\lambda_1 = \lim_{T\to\infty} \frac{1}{T} \log \sigma_1\!\big(\partial h_T/\partial h_0\big)$
# (nats per step): $\lambda_1 < 0$ vanishing, $\lambda_1 > 0$ exploding (chaos).
#
# An LSTM adds a path that is not a matrix product: $c_t = f_t \odot c_{t-1} + i_t \odot g_t$
# gives $\partial c_T / \partial c_t \ni \prod_{k} \operatorname{diag}(f_k)$, which is close to
# the identity while the forget gates stay near 1 (the "constant error carousel" of
# Hochreiter & Schmidhuber 1997).

# %%
import io
import os
import pathlib
import tempfile

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import PIL.Image
from IPython.display import Image, Markdown, display

from rnnlab import probes, registry
from rnnlab.train import load_run
from rnnlab.engine import make_cell
from rnnlab.viz import plots

from _common import SMOKE, show, size  # inlined by notebooks/_build.py


WORK = pathlib.Path(tempfile.mkdtemp(prefix="rnnlab-vanishing-"))
H, T, B, D = size(32, 8), size(80, 12), size(16, 2), 4  # hidden, time, batch, input features
CELLS = ["elman", "lstm", "gru"]
TRAINED = size(CELLS, ["lstm"])  # the cells section 3 trains

# %% [markdown]
# ## 2. Untrained cells: gradient norms over the lag
#
# `probes.cell_grad_norms` gets $\lVert \partial L/\partial h_t \rVert$ for **every** $t$ in one
# backward pass: the engine adds a zero tensor $\varepsilon_t$ to the state after each step,
# and $\partial L/\partial \varepsilon_t$ is exactly the total derivative $\partial L/\partial h_t$.
# The state is the whole carry (for an LSTM both $c$ and $h$). Here the loss reads the output at
# the last step, and each cell is driven by the same random inputs.

# %%
xs = jax.random.normal(jax.random.key(1), (B, T, D))  # [B, T, D]


def last_output(ys, final):  # per-example loss: sum of the last step's outputs
    return jnp.sum(ys[:, -1], axis=-1)


def init(cell):
    return cell.init(jax.random.key(0), cell.initialize_carry(None, (1, D)), jnp.zeros((1, D)))


untrained = {}
for name in CELLS:
    cell = make_cell(name, H)
    untrained[name] = (cell, init(cell))

lag = np.arange(T)[::-1]  # lag T-1-t for t = 0..T-1
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for name, (cell, params) in untrained.items():
    g = np.asarray(probes.cell_grad_norms(cell, params, xs, last_output)["total"])
    keep = g > 0  # the last step's state does not reach the loss through a later step
    ax.semilogy(lag[keep], g[keep], color=plots.color(name), label=name)
    print(f"{name:6s} decay rate {probes.decay_rate(g[keep]):.3f} nats/step")
ax.set_xlabel("lag T-1-t (steps back from the loss)")
ax.set_ylabel("||dL/dh_t||")
ax.set_title(f"untrained cells, H={H}, random N(0,1) inputs")
ax.legend()
show(fig)

# %% [markdown]
# All three decay exponentially at initialization. The decay rate printed above is the
# least-squares slope of $\log\lVert\partial L/\partial h_t\rVert$ against $t$
# (`probes.decay_rate`), in nats per step: a rate of 0.4 means a factor $e^{-0.4 \cdot 50}
# \approx 2 \cdot 10^{-9}$ over 50 steps. The tanh network loses the most (units driven into
# saturation by the inputs have $\tanh' \ll 1$); the GRU, whose update gates start near 1/2,
# almost as much; the LSTM, whose forget gates start at $\sigma(1) \approx 0.73$, the least.
#
# ### The whole spectrum of $\partial h_{T-1}/\partial h_t$
#
# The norm above follows one direction (the loss's). `probes.cell_jacobian_spectrum` returns
# **all** singular values of the Jacobian product at every lag, from the cell's own step
# function:

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, name in zip(axes, ["elman", "lstm"]):
    cell, params = untrained[name]
    sv = np.asarray(probes.cell_jacobian_spectrum(cell, params, xs[0]))  # [T, N]
    ax.semilogy(lag, sv, color=plots.color(name), alpha=0.35, linewidth=0.8)
    ax.semilogy(lag, sv[:, 0], color="black", linewidth=1.5, label="largest")
    ax.set_title(f"{name}: singular values of dh_(T-1)/dh_t (N={sv.shape[1]})")
    ax.set_xlabel("lag T-1-t")
    ax.legend()
axes[0].set_ylabel("singular value")
show(fig)

# %% [markdown]
# ## 3. After training: the `vanishing` experiment
#
# Does training change the picture? The `vanishing` experiment trains each cell on the adding
# problem (Le et al. 2015: sum the two marked numbers of a sequence of length $T$; the loss
# reads only the last step) and measures the gradient norms on the same batch at
# initialization (left) and after training (right). It is one call, the same as
# `rnnlab run vanishing experiment.cells="('elman','lstm','gru')" ...` on the command line.

# %%
vanishing_dir = WORK / "vanishing"
result = registry.run(
    "vanishing",
    [
        f"experiment.cells={tuple(TRAINED)}",
        f"data.seq_length={size(50, 10)}",
        f"model.hidden_size={size(32, 8)}",
        f"train.num_steps={size(400, 3)}",
        f"train.eval_every={size(400, 3)}",
        f"train.log_every={size(400, 3)}",
    ],
    workdir=vanishing_dir,
)
show(vanishing_dir / "figures" / "vanishing.png")
display(Markdown(result["table"]))

# %% [markdown]
# Read each curve from right (far from the loss) to left. The validation MSE is against the
# baseline of 0.167 (always predicting 1). Cells that learn the task have a reason to carry
# gradient back to the marked steps, which lie anywhere in the sequence, and training flattens
# their curves; a cell whose gradient has vanished gets no signal from the early marker.
#
# ## 4. The spectral-radius sweep
#
# The bound in section 1 says the recurrent matrix's scale decides everything. The
# `spectral-sweep` experiment (no training) builds tanh RNNs with $W \sim \mathcal N(0, 1/H)$
# rescaled to an exact spectral radius $r$, and measures for each $r$ the gradient decay rate
# and the top Lyapunov exponent.

# %%
sweep_dir = WORK / "spectral-sweep"
radii = size((0.5, 0.7, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5), (0.5, 1.5))
sweep = registry.run(
    "spectral-sweep",
    [
        f"experiment.radii={radii}",
        f"model.hidden_size={size(200, 8)}",
        f"data.seq_length={size(300, 12)}",
        f"data.batch_size={size(4, 2)}",
        "experiment.input_stds=(0.0, 1.0)",
    ],
    workdir=sweep_dir,
)
show(sweep_dir / "figures" / "spectral_sweep.png")
for key, radius in sweep.items():
    if "zero_crossing" in key:
        print(f"{key:42s} {radius if radius is None else round(radius, 3)}")

# %% [markdown]
# Without input (input std 0, the autonomous map) the state decays to the fixed point
# $h = 0$ for $r < 1$, and the top exponent follows the linear prediction $\log r$ exactly.
# Above $r = 1$ the state stays away from 0, the units saturate ($\tanh' < 1$) and the
# exponent falls far below $\log r$: it hovers near zero and turns positive at the radius
# printed above. Gradients vanish below that radius and explode above it, where the network
# is chaotic. In a network of finite size the crossing lies somewhat above 1 (the
# infinite-width theory puts it at 1). With input drive (std 1) the units saturate even more,
# which contracts: every rate is lower, and the exponent stays negative over the whole range
# (the `None` above: no crossing).
# The gradient decay rate and $\lambda_1$ (dashed) lie on top of each other: two measurements
# of the same thing, the growth rate of the Jacobian products.
#
# ## 5. The Lyapunov spectrum
#
# The top exponent is one number; the full spectrum tells how many directions of the state can
# carry information far back. `probes.cell_lyapunov` pushes an orthonormal basis through the
# step Jacobians (one JVP per direction per step, never forming $J$) and re-orthonormalizes by
# QR; the exponents are the average logs of the diagonal of $R$, in nats per step. Below: tanh
# RNNs at three spectral radii, and the LSTM and the tanh RNN trained in section 3 (driven by
# adding-problem inputs).

# %%
zeros = jnp.zeros((B, T, D))
h0 = jax.random.normal(jax.random.key(2), (B, H))  # start off the fixed point h = 0
cell = make_cell("elman", H, {"recurrent_init": "gaussian", "recurrent_scale": 1.0})
params = init(cell)  # W_h with spectral radius exactly 1; r * W_h has radius r
fig, ax = plt.subplots(figsize=(6.5, 3.8))
for r, style in [(0.8, ":"), (1.0, "--"), (1.3, "-")]:
    scaled = {"params": {**params["params"], "w_h": r * params["params"]["w_h"]}}
    lam = np.asarray(probes.cell_lyapunov(cell, scaled, zeros, warmup=T // 4, carry=h0))
    ax.plot(np.arange(1, lam.size + 1), lam, style, color=plots.color("elman"),
            label=f"elman, radius {r} (no input)")  # fmt: skip

adding_inputs = None
for name in [c for c in ("elman", "lstm") if c in TRAINED]:
    trained = load_run(vanishing_dir / "runs" / name)
    cfg = trained.config.model
    cell = make_cell(name, cfg.hidden_size, cfg.cell_options.to_dict())
    cell_params = trained.params["rnn"]["layer_0"]["fwd"]  # {"params": ...} of layer 0
    if adding_inputs is None:
        from rnnlab import data

        task = data.make("adding", seq_length=trained.config.data.seq_length, batch_size=B)
        adding_inputs = jnp.asarray(next(task.eval_batches())["inputs"])  # [B, T, 2]
    lam = np.asarray(probes.cell_lyapunov(cell, cell_params, adding_inputs, warmup=5))
    ax.plot(np.arange(1, lam.size + 1), lam, "o-", markersize=2, color=plots.color(name),
            label=f"{name}, trained on adding (N={lam.size})")  # fmt: skip
ax.axhline(0, color="black", linewidth=0.8)
ax.set_xlabel("exponent index i")
ax.set_ylabel("lambda_i (nats per step)")
ax.set_title("Lyapunov spectra")
ax.legend(fontsize=8)
show(fig)

# %% [markdown]
# At radius 0.8 every direction contracts: the top exponent is $\log 0.8 = -0.22$, and the
# others are lower (the other eigenvalues of $W$ lie inside the disk of radius 0.8). Raising
# the radius lifts the top of the spectrum to zero. The trained LSTM has a state of $N = 2H$
# coordinates ($c$ and $h$); its top exponent is about zero and half of its exponents lie
# between 0 and -1, while the trained tanh RNN's whole spectrum sits lower: the LSTM has many
# directions along which a perturbation (and a gradient) neither dies nor explodes over the
# length of the task, which is what solving the adding problem needed.
#
# **Where next.** `rnnlab list` shows the other gradient-flow experiments; `add_a_cell.ipynb`
# puts a new cell into the figure of section 3, and `long_range_tasks.ipynb` trains on the
# adding and copy problems.
