"""captioning: a CNN encoder and an attending LSTM decoder caption strips of handwritten digits.

Command:
    rnnlab run captioning                        # Show, Attend and Tell style (attention)
    rnnlab run captioning:smoke                  # seconds; what the test suite runs
    rnnlab run captioning model.attention=false  # Show and Tell: the image only sets s_0
    rnnlab run captioning data.options.max_digits=6 data.options.shift=false

What it does: composes strips of 2-4 of scikit-learn's bundled 8x8 digits (``digit_strips``,
:mod:`rnnlab.data.digits`: the 1797 source images are split 80/20 *before* composing, so no
held-out strip shares a source image with training) captioned with their words ("three one
four" + EOS); trains :class:`rnnlab.captioning.Captioner` (two conv blocks 32/64 -> 8 column
annotations of 128; LSTM decoder of 128, embedding 32, additive attention over the columns;
Xu et al. 2015 "Show, Attend and Tell"; with ``model.attention=false`` the image only
initializes the state, Vinyals et al. 2015 "Show and Tell") with teacher forcing; then decodes
512 held-out strips greedily and with a 4-beam search (the compiled loops of
:mod:`rnnlab.seq2seq`) and reports exact match (the whole caption right) and per-word accuracy
in ``results.json``, with ``figures/captions.png`` in the workdir: held-out strips, their
captions, and the attention over the strip at each word.

Expected runtime (2 CPU cores): ~2-4 minutes for the 2000 steps and both decodings (a 280 s
training time limit is the safety stop); smoke: well under a minute.

Expected result: greedy exact match well above chance: a small CNN reads a single 8x8 digit
~97% right, so a 2-4 digit caption is all right ~90% of the time at best.

Measured (``rnnlab run captioning``, 2 shared, loaded CPU cores, 3 min 35 s wall, 206 s in
training and evals): on 512 held-out strips of 359 unseen source images, greedy exact match
0.8555 and per-word accuracy 0.9098; beam-4 exact match 0.8613, per-word 0.9131 (val token
accuracy 0.963, val loss 0.088 nats/token; 244,781 parameters).
"""

from __future__ import annotations

import os
import pathlib

from rnnlab import config as config_lib
from rnnlab import metrics

VARIANTS = ("default", "smoke")


def get_config(variant: str | None = None):
    variant = variant or "default"
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r} of captioning; known: {', '.join(VARIANTS)}")
    c = config_lib.get_config()
    c.model.cell = "lstm"
    c.model.hidden_size = 128
    c.model.embed_dim = 32
    c.model.attention = True  # False: Show and Tell (the CNN only sets the initial state)
    c.model.attention_size = 64
    c.data.name = "digit_strips"
    c.data.batch_size = 64
    c.data.val_fraction = 0.2  # of the source images, held out before composing
    c.data.eval_batches = 8  # 8 x 64 = 512 held-out strips
    c.optim.learning_rate = 3e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.train.num_steps = 2000
    c.train.time_limit_s = 280.0
    c.train.eval_every = 500
    c.train.log_every = 100
    c.train.checkpoint_every = 1000
    if variant == "smoke":
        c.model.hidden_size = 16
        c.model.embed_dim = 8
        c.model.attention_size = 8
        c.data.batch_size = 8
        c.data.eval_batches = 2
        c.optim.warmup_steps = 2
        c.train.num_steps = 6
        c.train.eval_every = 6
        c.train.log_every = 3
        c.train.checkpoint_every = 6
        c.train.time_limit_s = 60.0
        c.train.progress = False
    return c


def run(config, workdir: str | os.PathLike) -> dict:
    """Train (or resume), then report held-out exact match and per-word accuracy (greedy and
    beam search) and draw ``figures/captions.png``."""
    from rnnlab import captioning
    from rnnlab import data as data_lib
    from rnnlab.train import data_kwargs, load_run, train_and_evaluate

    dataset = data_lib.make(config.data.name, **data_kwargs(config))
    summary = train_and_evaluate(config, workdir, dataset=dataset)
    trained = load_run(workdir)
    results = captioning.evaluate(trained, dataset)
    figures = pathlib.Path(workdir, "figures")
    figures.mkdir(parents=True, exist_ok=True)
    results["figure"] = captioning.plot_captions(trained, dataset, figures / "captions.png")
    from rnnlab.metrics import write_json

    write_json(figures / "captions.json", results)  # the figure's run: its accuracies beside it
    results.update(
        attention=bool(config.model.attention),
        heldout_images=dataset.metadata()["heldout_images"],
        val_loss=summary.get("val_loss"),
        step=summary.get("step"),
        time_s=summary.get("time_s"),
        num_params=summary.get("num_params"),
    )
    metrics.write_json(pathlib.Path(workdir, "results.json"), results)
    print(
        f"held-out ({results['num_heldout']} strips of unseen digit images): exact match greedy "
        f"{results['exact_match_greedy']:.4f}, beam {results['exact_match_beam4']:.4f}; "
        f"word accuracy greedy {results['word_accuracy_greedy']:.4f}, "
        f"beam {results['word_accuracy_beam4']:.4f}"
    )
    print("\n".join(results["examples"]))
    print(f"figure: {results['figure']}")
    return results
