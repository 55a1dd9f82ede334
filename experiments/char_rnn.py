"""char-rnn: Karpathy's character-level LSTM language model, end to end.

Command:
    rnnlab run char-rnn                           # the embedded Python-stdlib corpus, no network
    rnnlab run char-rnn --data tinyshakespeare    # download once (sha256-checked), cache, train
    rnnlab run char-rnn --data FILE.txt           # any UTF-8 text file
    rnnlab run char-rnn:shakespeare               # the quality-benchmark config
    rnnlab run char-rnn:smoke                     # seconds; what the test suite runs
    Options follow karpathy/char-rnn's train.lua, as config overrides:
    model.cell=lstm|gru|elman  model.num_layers=2  model.hidden_size=256  model.dropout=0.1
    data.seq_length=64  data.batch_size=32  optim.learning_rate=2e-3  train.time_limit_s=540
    The same command with the same --workdir resumes an interrupted run.

What it does: trains a 2-layer LSTM (256 units, 64-wide character embedding; Adam 2e-3 with a
short warmup and a cosine decay, global-norm clip 5, truncated BPTT over 32 contiguous streams
of 64 characters with the state carried across batches) on the tail-split corpus (the last 10%
of the characters is validation), then prints and saves (``samples.txt``) samples at
temperatures 0.5, 1.0 and 1.5 from the best checkpoint, and the validation loss in nats/char
and bits/char (``results.json``). Workdir: config.json, data.json (vocabulary, split),
metrics.jsonl, checkpoints/, samples.txt, results.json. Then ``rnnlab sample WORKDIR`` and
``rnnlab viz WORKDIR``.

Expected runtime (2 CPU cores): default and shakespeare: under 10 minutes in all. They have
``train.num_steps=0``: the run times 20 steps on the machine it runs on and plans as many steps
as fit in ``train.time_limit_s=540`` s (so the cosine schedule ends inside the budget on any
machine; a resumed run keeps the recorded number); the time limit stays the hard stop. Set
``train.num_steps=N`` for a fixed schedule instead. Smoke: seconds.

Expected result: shakespeare: validation loss <= 1.40 nats/char (2.02 bits/char) in 10
minutes (the target of this project, issue 4; for scale, a numpy port of char-rnn's 2x128
defaults reached 1.43 after 8 minutes and 1.39 after 13 on one core, REFERENCE.md, on
char-rnn's own split; nanoGPT's baby GPT 1.47 on an A100, on the tail split). Mind the split:
the tail 10% used here is harder than char-rnn's (5-gram 1.757 vs 1.591 nats/char, measured;
see ``benchmarks/charlm_quality.py --split``). Samples with speaker names, line structure and
mostly real words. Measured with ``benchmarks/charlm_quality.py`` (see BENCHMARKS.md; not yet
run on a quiet machine when this was written). Default (Python source): lower than
Shakespeare, as code is more predictable (Karpathy, Johnson & Fei-Fei 2015: Linux source 0.84
vs War and Peace 1.08 nats/char); samples that look like Python (indentation, def/class,
self., docstrings).
"""

from __future__ import annotations

import copy
import os
import pathlib
import time

import numpy as np

from rnnlab import config as config_lib
from rnnlab import metrics

VARIANTS = ("default", "smoke", "shakespeare")
#: keys run() plans before training: train.num_steps=0 (fit the time budget) and the warmup
#: cut to a tenth of the planned steps (rnnlab.registry: allowed 0, free on resumption)
PLANNED = ("train.num_steps", "optim.warmup_steps")
TEMPERATURES = (0.5, 1.0, 1.5)
SAMPLE_LENGTH = 500
WARMUP_CHARS = 1000  # samples start after the last 1000 training characters (not shown)


def get_config(variant: str | None = None):
    variant = variant or "default"
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r} of char-rnn; known: {', '.join(VARIANTS)}")
    c = config_lib.get_config()
    c.seed = 0
    c.model.cell = "lstm"
    c.model.num_layers = 2
    c.model.hidden_size = 256
    c.model.embed_dim = 64
    c.model.dropout = 0.0
    c.data.name = "text"
    c.data.path = ""  # the embedded Python-stdlib corpus
    c.data.seq_length = 64
    c.data.batch_size = 32
    c.data.val_fraction = 0.1
    c.optim.name = "adam"
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.optim.clip = "global_norm"
    c.optim.clip_value = 5.0
    c.train.num_steps = 0  # 0: as many as fit in time_limit_s here (measured; see run)
    c.train.time_limit_s = 540.0
    c.train.eval_every = 500
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    if variant == "shakespeare":
        c.data.path = "tinyshakespeare"  # or a local copy: data.path=../shared/data/...
    elif variant == "smoke":
        c.model.num_layers = 1
        c.model.hidden_size = 16
        c.model.embed_dim = 8
        c.data.seq_length = 16
        c.data.batch_size = 4
        c.data.eval_batches = 4
        c.optim.warmup_steps = 2
        c.train.num_steps = 12
        c.train.time_limit_s = 60.0
        c.train.eval_every = 6
        c.train.log_every = 6
        c.train.checkpoint_every = 6
        c.train.progress = False
    return c


def run(config, workdir: str | os.PathLike) -> dict:
    """Train (or resume), then sample at three temperatures and report the validation loss.

    ``train.num_steps=0`` sizes the run to the time budget: see :func:`plan_num_steps`.
    """
    from rnnlab import data as data_lib
    from rnnlab import sample
    from rnnlab.train import data_kwargs, load_run, train_and_evaluate

    config = copy.deepcopy(config)
    dataset = data_lib.make(config.data.name, **data_kwargs(config))
    if config.train.num_steps == 0:
        config.train.num_steps = plan_num_steps(config, workdir, dataset)
        # a slow machine plans few steps: keep the warmup within the first tenth
        config.optim.warmup_steps = min(config.optim.warmup_steps, config.train.num_steps // 10)
    summary = train_and_evaluate(config, workdir, dataset=dataset)
    trained = load_run(workdir)  # the best checkpoint (lowest validation loss)
    vocab = sample.run_vocab(trained)
    warmup = sample.warmup_text(trained, WARMUP_CHARS)  # see rnnlab.sample: a warm state
    samples = {}
    for i, t in enumerate(TEMPERATURES):
        samples[t] = sample.sample_text(
            trained.model,
            trained.params,
            vocab,
            warmup=warmup,
            length=SAMPLE_LENGTH,
            temperature=t,
            seed=i,
        )
    blocks = [f"----- temperature {t} -----\n{text}\n" for t, text in samples.items()]
    if warmup:
        blocks.insert(0, f"(state warmed on the last {len(warmup)} training characters)\n")
    pathlib.Path(workdir, "samples.txt").write_text("\n".join(blocks), encoding="utf-8")

    val = summary.get("val_loss")
    best = summary.get("best_val_loss")
    results = {
        "val_loss_nats": val,
        "val_bits_per_char": float(val / np.log(2.0)) if val is not None else None,
        "best_val_loss_nats": best,
        "best_step": summary.get("best_step"),
        "sampled_from_step": trained.step,
        "step": summary.get("step"),
        "num_steps": summary.get("num_steps"),
        "stopped_early": summary.get("stopped_early"),
        "train_loss_nats": summary.get("train_loss"),
        "time_s": summary.get("time_s"),
        "num_params": summary.get("num_params"),
        "corpus": trained.metadata.get("source"),
        "split": trained.metadata.get("split"),
        "vocab_size": len(vocab),
        "uniform_nats": trained.metadata.get("uniform_nats"),
        "sample_temperature_1.0": samples[1.0][:300],
    }
    metrics.write_json(pathlib.Path(workdir, "results.json"), results)

    print("\n".join(blocks))
    if val is not None:
        print(
            f"validation loss at step {summary.get('step')}: {val:.4f} nats/char = "
            f"{val / np.log(2.0):.4f} bits/char ({trained.metadata.get('split')}); "
            f"best {best:.4f} nats/char at step {summary.get('best_step')}"
            if best is not None
            else f"validation loss: {val:.4f} nats/char = {val / np.log(2.0):.4f} bits/char"
        )
    if summary.get("stopped_early"):
        print("stopped at the time limit: run the same command again to continue training")
    print(f"wrote {workdir}/samples.txt and {workdir}/results.json")
    return results


def seconds_per_step(config, dataset, steps: int = 20) -> tuple[float, float]:
    """``(seconds per train step, seconds to compile it)`` for ``config`` on this machine now."""
    import jax
    import jax.numpy as jnp

    from rnnlab import models
    from rnnlab.steps import jitted_steps

    model = models.build(config.model, dataset.model_spec)
    init, step, _ = jitted_steps(model, config.optim, 1000, True, 1)
    batch = {k: jnp.asarray(v) for k, v in dataset.train_batch(0)[0].items()}
    keys = jax.random.PRNGKey(config.seed)[None]
    t = time.perf_counter()
    state, m = step(init(keys, batch), batch, jnp.asarray(True), keys)  # compiles
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(1, steps + 1):
        batch = {k: jnp.asarray(v) for k, v in dataset.train_batch(s)[0].items()}
        state, m = step(state, batch, jnp.asarray(False), keys)
    jax.block_until_ready(m)
    return (time.perf_counter() - t) / steps, compile_s


def plan_num_steps(config, workdir, dataset, *, budget_s: float | None = None) -> int:
    """How many steps fit in ``budget_s`` (default ``train.time_limit_s``) on this machine.

    A run being resumed keeps the number its ``config.json`` recorded (the cosine schedule
    depends on it). Otherwise: time 20 steps, count a validation pass as a third of a step per
    chunk, keep 3% for logs and checkpoints, and leave out the compile time and 15 s for the
    last evaluation.
    """
    recorded = pathlib.Path(workdir, "config.json")
    if recorded.exists():
        return int(metrics.read_json(recorded)["train"]["num_steps"])
    budget = config.train.time_limit_s if budget_s is None else budget_s
    if budget <= 0:
        raise ValueError("train.num_steps=0 (fit the time budget) needs train.time_limit_s > 0")
    step_s, compile_s = seconds_per_step(config, dataset)
    eval_s = dataset.num_eval_batches * step_s / 3
    per_step = 1.03 * step_s + eval_s / config.train.eval_every
    steps = max(int((budget - compile_s - 15.0) / per_step), 10)
    print(
        f"measured {1e3 * step_s:.1f} ms/step here: planning {steps} steps for "
        f"{budget:.0f} s of training",
        flush=True,
    )
    return steps
