"""parity: many-to-one sequence classification (the parity of a bit string) across cells.

Command:
    rnnlab run parity                   # lstm, gru, indrnn, mingru, minlstm, lru at T = 4, 6
    rnnlab run parity:smoke             # seconds; what the test suite runs
    Options: experiment.cells="('lstm', 'mingru')", experiment.lengths="(10, 40)",
    train.num_seeds=3, train.num_steps=3000

What it does: the many-to-one task shape. For each cell and length T, trains
``rnnlab.models.SequenceModel`` (embed 16 -> one recurrent layer of 64 -> ``readout="last"``,
the output at the last step -> Dense(2)) with softmax cross-entropy on the ``parity`` dataset
(``rnnlab.data.tasks``: class = number of ones mod 2), ``train.num_seeds`` seeds vmapped, Adam
3e-3, batch 64, and tabulates the final validation accuracy (4 x 64 fixed strings; chance 0.5).
The linear cells run on the engine's default scan (``scan="auto"``).

Expected runtime (2 CPU cores): ~5 minutes (measured 276 s wall, niced, on a loaded machine);
smoke: seconds.

Expected result: parity is the classic hard case for gradient descent: the loss is flat
(chance) until the network finds the whole XOR chain, and the plateau grows quickly with T.
Cells whose recurrence is linear with positive, input-dependent decay -- minGRU, minLSTM
(``a_t`` in (0, 1)) -- cannot flip the sign of their state, so one layer of them cannot track
parity at every length (Grazzi et al. 2025, "Unlocking state-tracking in linear RNNs through
negative eigenvalues", ICLR); the LRU's decay does not depend on the input at all.
Measured (``rnnlab run parity``; val accuracy per seed, 2 seeds, 2000 steps, chance 0.5):

=========  ==============  ==============
cell       T = 4           T = 6
=========  ==============  ==============
lstm       1.000, 1.000    0.480, 0.375
gru        1.000, 1.000    0.465, 0.508
indrnn     1.000, 1.000    0.637, 0.602
mingru     0.523, 1.000    0.461, 0.441
minlstm    0.535, 0.492    0.438, 0.438
lru        0.594, 0.551    0.465, 0.488
=========  ==============  ==============

The nonlinear cells solve T = 4 in every seed, the linear ones mostly do not; at T = 6 no
cell leaves the plateau within 2000 steps (more steps, or a length curriculum, are needed).
"""

from __future__ import annotations

import pathlib

import numpy as np

from rnnlab import config as config_lib
from rnnlab import study

VARIANTS = ("default", "smoke")
#: keys the experiment sets itself per run: refused on the command line (rnnlab.registry.resolve)
IGNORES = {"data.seq_length": "experiment.lengths sets T for each run"}


def get_config(variant: str | None = None):
    variant = variant or "default"
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r} of parity; known: {', '.join(VARIANTS)}")
    c = config_lib.get_config()
    c.data.name = "parity"
    c.data.batch_size = 64
    c.model.hidden_size = 64
    c.model.embed_dim = 16
    c.optim.learning_rate = 3e-3
    c.train.num_seeds = 2
    c.train.num_steps = 2000
    c.train.eval_every = 500
    c.train.log_every = 500
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(
        c, cells=("lstm", "gru", "indrnn", "mingru", "minlstm", "lru"), lengths=(4, 6)
    )
    if variant == "smoke":
        c.model.hidden_size = 8
        c.model.embed_dim = 4
        c.data.batch_size = 8
        c.train.num_steps = 4
        c.train.eval_every = 2
        c.train.log_every = 2
        c.experiment.cells = ("lstm", "mingru")
        c.experiment.lengths = (6,)
    return c


def run(config, workdir) -> dict:
    """Train every (cell, T); tabulate the final validation accuracy per seed."""
    rows = []
    for cell in config.experiment.cells:
        for T in config.experiment.lengths:
            sub = pathlib.Path(workdir) / "runs" / cell / f"T{T}"
            s = study.subrun(config, sub, [f"model.cell={cell}", f"data.seq_length={T}"])
            acc = s.get("val_accuracy_per_seed", [s.get("val_accuracy")])
            rows.append({"cell": cell, "T": T, "val_accuracy": [float(a) for a in acc]})
    lines = ["| cell | T | val accuracy (mean over seeds) | per seed |", "|---|---|---|---|"]
    for r in rows:
        per_seed = ", ".join(f"{a:.3f}" for a in r["val_accuracy"])
        lines.append(f"| {r['cell']} | {r['T']} | {np.mean(r['val_accuracy']):.3f} | {per_seed} |")
    table = "\n".join(lines)
    print(table)
    return {"rows": rows, "table": table, "chance": 0.5}
