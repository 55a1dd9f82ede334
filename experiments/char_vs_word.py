"""char-vs-word: a character-level and a word-level LSTM LM on the same text, in bits per character.

Command:
    rnnlab run char-vs-word                          # the embedded Python-stdlib corpus
    rnnlab run char-vs-word --data tinyshakespeare   # or data.path=FILE.txt: any UTF-8 text
    rnnlab run char-vs-word:smoke                    # seconds; what the test suite runs
    Options: experiment.match=char|word (whose hidden size is solved for), train.time_limit_s
    (per model), experiment.min_count, experiment.word_hidden_size, experiment.word_embed_dim,
    experiment.word_seq_length; model.* / data.* / optim.* configure the character model and
    are shared by the word model (cell, layers, batch, optimizer).

What it does: trains two language models on the same corpus and the same tail split (the last
``data.val_fraction`` of the characters; the word split is moved to the next token boundary):

* a **char** model (``data.name=text``): the config's model (default one LSTM layer, 64-wide
  embedding) over ``data.seq_length`` characters;
* a **word** model (``data.name=words``, :mod:`rnnlab.data.words`: words, whitespace runs and
  single symbols as tokens, case kept, vocabulary = training tokens seen ``min_count`` times,
  the rest ``<unk>``) with ``word_embed_dim`` and ``word_seq_length`` tokens per chunk.

**Matched parameter count**: with ``match=char`` (default) the word model has
``word_hidden_size`` units and the char model's hidden size is solved for (parameters are a
quadratic in H for every cell: counted exactly at three sizes, solved, checked at the integers
around the root) so both counts agree to within one unit's worth; ``match=word`` solves the word
model's instead (it fails, saying so, when the word model's embedding and softmax alone exceed
the char model's count). **Matched wall time**: both train for ``train.time_limit_s``
(``train.num_steps=0``: the steps that fit in 1.25 x the budget, measured as ``char-rnn`` does,
for the cosine schedule, so that the time limit, not a step count misjudged on a busy machine,
ends both runs; ``time_s`` in the results says how long each trained). **Bits per character**:
the char model's validation loss / ln 2; the word model's total log-loss over its validation
tokens divided by the characters they cover (every character is in exactly one token, so spaces
count), with the unknown tokens spelt by a character unigram (``bits_per_char``, an upper bound)
and without (``bits_per_char_unk_free``, a lower bound) -- exactly as written in
:mod:`rnnlab.data.words`. ``results.json`` has both models' sizes, steps, losses, bpc, the
unknown-token rates, and ``figures/char_vs_word.png`` (+ .json) the bits-per-char curves of both
against the fraction of the time budget.

Expected runtime (2 CPU cores): default about 5 minutes (2 x 120 s of training, plus step
timing, compiles and evaluations; measured 6 min 41 s on the loaded machine below); smoke:
seconds (20 s measured, loaded).

Expected result: with a short budget the word model is ahead: each of its steps predicts a whole
token (3.1 characters on average on the stdlib corpus, whitespace runs and keywords among the
most frequent), so its first hundred updates already buy it most of what frequent tokens give,
while the char model is still near the character unigram (below: 3.08 nats/char after 101
updates, against ln 101 = 4.62 for uniform over the 101 characters). The unknown tokens cost the
word model twice -- ``<unk>`` itself, then the spelling -- and the spelling is a floor no
training lowers (about 1 bit/char on the stdlib corpus at min_count 3: 6% of the tokens, 17% of
the characters are unknown). Without the spelling (``bits_per_char_unk_free``) the word model
looks a third better than it is; raising ``min_count`` shrinks its softmax (and so the matched
char model) but raises that floor. Given time the char model is expected to pass the word model
(it has no such floor), which this 2-minute record does not reach.

Measured (``rnnlab run char-vs-word``, stdlib corpus, 14:26 UTC on the shared 2-core machine
at a load average of about 17 from other jobs, so each model got only ~100 updates in its
120 s; ``results.json``):

=====================  ======  ==========  =====  =====================  ==========
model                  hidden  parameters  steps  validation loss        bits/char
=====================  ======  ==========  =====  =====================  ==========
char                   375     704,440     101    3.0808 nats/char       4.4446
word (V=6,994, mc 3)   64      703,250     85     4.5102 nats/token      3.0930
=====================  ======  ==========  =====  =====================  ==========

The word model's 3.0930 bits/char is 2.0981 for the tokens with the unknowns spelt free plus
0.9949 for spelling its unknown tokens (5.95% of its 63,488 validation tokens, 17.43% of the
196,892 characters they cover; the char model is scored on 198,656 characters of the same
tail). Word minus char: -1.35 bits/char -- the short-budget regime above, on a loaded
machine; rerun on a quiet one, or with a larger ``train.time_limit_s``, before quoting it.
"""

from __future__ import annotations

import copy
import math
import os
import pathlib

import numpy as np

from rnnlab import config as config_lib
from rnnlab import metrics, registry, study

VARIANTS = ("default", "smoke")
PLAN_FACTOR = 1.25  # steps planned for 1.25 x time_limit_s (see _train)
#: keys run() plans before training (train.num_steps=0: fit the time budget; the warmup cut to
#: a tenth of the planned steps): allowed 0, and free on resumption (rnnlab.registry)
PLANNED = ("train.num_steps", "optim.warmup_steps")


def get_config(variant: str | None = None):
    variant = variant or "default"
    if variant not in VARIANTS:
        raise KeyError(f"unknown variant {variant!r} of char-vs-word; known: {', '.join(VARIANTS)}")
    c = config_lib.get_config()
    c.model.cell = "lstm"
    c.model.num_layers = 1
    c.model.hidden_size = 256  # the char model's; solved for when experiment.match=char
    c.model.embed_dim = 64
    c.data.name = "text"
    c.data.path = ""  # the embedded Python-stdlib corpus
    c.data.seq_length = 64
    c.data.batch_size = 32
    c.data.val_fraction = 0.1
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 50
    c.train.num_steps = 0  # 0: as many as fit in time_limit_s (measured, as char-rnn does)
    c.train.time_limit_s = 120.0
    c.train.eval_every = 100
    c.train.log_every = 50
    c.train.checkpoint_every = 0
    c.train.progress = False
    study.with_section(
        c, match="char", min_count=3, word_hidden_size=64, word_embed_dim=32, word_seq_length=32
    )
    if variant == "smoke":
        c.model.embed_dim = 8
        c.data.seq_length = 16
        c.data.batch_size = 4
        c.data.eval_batches = 4
        c.optim.warmup_steps = 2
        c.train.num_steps = 6
        c.train.time_limit_s = 60.0
        c.train.eval_every = 3
        c.train.log_every = 3
        c.experiment.min_count = 20
        c.experiment.word_hidden_size = 8
        c.experiment.word_embed_dim = 4
        c.experiment.word_seq_length = 8
    return c


def check_config(config, base) -> None:
    """Refuse the hidden size the experiment solves for (``experiment.match``) when given."""
    from rnnlab.config import ConfigError

    solved = {"char": "model.hidden_size", "word": "experiment.word_hidden_size"}
    key = solved.get(config.experiment.match)
    if key is None:
        raise ConfigError(
            f"experiment.match must be 'char' or 'word', got {config.experiment.match!r}"
        )
    section, name = key.split(".")
    if config[section][name] != base[section][name]:
        raise ConfigError(
            f"{key}={config[section][name]} has no effect: with experiment.match="
            f"{config.experiment.match} it is solved for to match the other model's parameter "
            "count; leave it out, or set experiment.match to the other model"
        )


# ------------------------------------------------------------------------ parameter matching


def count_params(config, dataset) -> int:
    """Parameters of ``rnnlab.models.build(config.model, dataset.model_spec)``, exactly."""
    import jax

    from rnnlab import models

    model = models.build(config.model, dataset.model_spec)
    batch = {k: np.asarray(v) for k, v in dataset.train_batch(0)[0].items()}
    keys = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}
    shapes = jax.eval_shape(lambda: model.init(keys, batch, None, method="loss"))
    return int(sum(np.prod(p.shape) for p in jax.tree.leaves(shapes["params"])))


def solve_hidden_size(config, dataset, target: int) -> tuple[int, int]:
    """``(H, count)``: the hidden size whose parameter count is nearest ``target``.

    ``P(H) = a H^2 + b H + c`` for every cell (its matrices are H x H, H x inputs, H x
    outputs): fitted exactly through three counts, solved for ``P(H) = target``, and the
    integers around the root counted to pick the nearest.
    """

    def at(h):
        c = copy.deepcopy(config)
        c.model.hidden_size = int(h)
        return count_params(c, dataset)

    hs = (8, 16, 32)
    a, b, c0 = np.polyfit(hs, [at(h) for h in hs], 2)
    roots = [r.real for r in np.roots([a, b, c0 - target]) if abs(r.imag) < 1e-9 and r.real > 0]
    if not roots:
        smallest = at(1)
        raise ValueError(
            f"no hidden size reaches {target:,} parameters: at H=1 the model already has "
            f"{smallest:,} (its embedding and softmax over {dataset.model_spec['vocab_size']:,} "
            "tokens); raise experiment.min_count, lower the embed_dim, or use experiment.match="
            + ("word" if config.data.name == "text" else "char")
        )
    root = max(roots)
    counts = {h: at(h) for h in {max(1, math.floor(root)), max(1, math.ceil(root))}}
    best = min(counts, key=lambda h: abs(counts[h] - target))
    return best, counts[best]


# ------------------------------------------------------------------------------- the run


def _word_config(config):
    e = config.experiment
    overrides = [
        "data.name=words",
        f"data.seq_length={e.word_seq_length}",
        f"model.hidden_size={e.word_hidden_size}",
        f"model.embed_dim={e.word_embed_dim}",
        f"data.options.min_count={e.min_count}",
    ]
    return registry.apply(copy.deepcopy(config), overrides)


def _train(config, workdir, dataset, plan) -> dict:
    from rnnlab.train import train_and_evaluate

    config = copy.deepcopy(config)
    if config.train.num_steps == 0:  # plan a quarter more: the time limit, not the plan, stops
        budget = PLAN_FACTOR * config.train.time_limit_s  # both models (equal wall time)
        config.train.num_steps = plan(config, workdir, dataset, budget_s=budget)
        config.optim.warmup_steps = min(config.optim.warmup_steps, config.train.num_steps // 10)
    return train_and_evaluate(config, workdir, dataset=dataset)


def run(config, workdir: str | os.PathLike) -> dict:
    """Solve the sizes, train both models for the same time, report both in bits/char."""
    from rnnlab import data as data_lib
    from rnnlab.data import words
    from rnnlab.train import data_kwargs

    e = config.experiment
    if e.match not in ("char", "word"):
        raise ValueError(f"experiment.match must be 'char' or 'word', got {e.match!r}")
    if config.data.name != "text":
        raise ValueError(f"data.name configures the char model and must be 'text', got "
                         f"{config.data.name!r} (the word model uses 'words')")  # fmt: skip
    workdir = pathlib.Path(workdir)
    char_cfg = copy.deepcopy(config)
    word_cfg = _word_config(config)
    char_data = data_lib.make("text", **data_kwargs(char_cfg))
    word_data = data_lib.make("words", **data_kwargs(word_cfg))
    if e.match == "char":
        word_params = count_params(word_cfg, word_data)
        char_cfg.model.hidden_size, char_params = solve_hidden_size(
            char_cfg, char_data, word_params
        )
    else:
        char_params = count_params(char_cfg, char_data)
        word_cfg.model.hidden_size, word_params = solve_hidden_size(
            word_cfg, word_data, char_params
        )
    print(
        f"parameters: char model H={char_cfg.model.hidden_size}: {char_params:,}; word model "
        f"H={word_cfg.model.hidden_size}: {word_params:,} (V={len(word_data.vocab):,})"
    )

    plan = registry.load("char-rnn").plan_num_steps
    char_sum = _train(char_cfg, workdir / "char", char_data, plan)
    word_sum = _train(word_cfg, workdir / "word", word_data, plan)

    meta = word_data.metadata()
    C = meta["val_eval_chars"]
    char_bpc = char_sum["val_loss"] / math.log(2.0)
    word_bpc = words.bits_per_char(word_sum["val_loss"], meta)
    word_free = words.bits_per_char(word_sum["val_loss"], meta, spell_unknowns=False)
    results = {
        "char": {
            "hidden_size": char_cfg.model.hidden_size, "num_params": char_params,
            "steps": char_sum["step"], "time_s": char_sum["time_s"],
            "val_loss_nats_per_char": char_sum["val_loss"], "bits_per_char": char_bpc,
            "vocab_size": len(char_data.vocab),
            "val_chars_evaluated": int(char_data.num_eval_batches * char_data.seq_length
                                       * char_data.batch_size),
        },
        "word": {
            "hidden_size": word_cfg.model.hidden_size, "num_params": word_params,
            "steps": word_sum["step"], "time_s": word_sum["time_s"],
            "val_loss_nats_per_token": word_sum["val_loss"], "bits_per_char": word_bpc,
            "bits_per_char_unk_free": word_free,
            "unk_spelling_bits_per_char": meta["val_unk_spelling_nats"] / (C * math.log(2.0)),
            "vocab_size": len(word_data.vocab), "min_count": e.min_count,
            "val_unk_rate": meta["val_unk_rate"], "val_unk_char_rate": meta["val_unk_char_rate"],
            "val_tokens_evaluated": meta["val_eval_tokens"], "val_chars_evaluated": C,
            "chars_per_token": C / meta["val_eval_tokens"],
        },
        "corpus": char_data.source,
        "time_limit_s": config.train.time_limit_s,
        "match": e.match,
        "word_minus_char_bpc": word_bpc - char_bpc,
    }  # fmt: skip
    results["table"] = _table(results)
    _figure(workdir, char_dir=workdir / "char", word_dir=workdir / "word", meta=meta)
    print(results["table"])
    return results


def _table(r: dict) -> str:
    c, w = r["char"], r["word"]
    lines = [
        "| model | hidden | params | steps | val loss | bits/char | bits/char, unknowns free |",
        "|---|---|---|---|---|---|---|",
        f"| char | {c['hidden_size']} | {c['num_params']:,} | {c['steps']} | "
        f"{c['val_loss_nats_per_char']:.4f} nats/char | {c['bits_per_char']:.4f} | -- |",
        f"| word (V={w['vocab_size']:,}) | {w['hidden_size']} | {w['num_params']:,} | "
        f"{w['steps']} | {w['val_loss_nats_per_token']:.4f} nats/token | "
        f"{w['bits_per_char']:.4f} | {w['bits_per_char_unk_free']:.4f} |",
        "",
        f"unknown tokens: {100 * w['val_unk_rate']:.2f}% of the word model's validation tokens, "
        f"{100 * w['val_unk_char_rate']:.2f}% of their characters; spelling them costs "
        f"{w['unk_spelling_bits_per_char']:.4f} bits/char of the word model's "
        f"{w['bits_per_char']:.4f}. Word minus char: {r['word_minus_char_bpc']:+.4f} bits/char.",
    ]
    return "\n".join(lines)


def _figure(workdir, *, char_dir, word_dir, meta) -> None:
    """Bits per char of both models' evals against the fraction of their training steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rnnlab.data import words

    curves = {}
    for name, folder in (("char", char_dir), ("word", word_dir)):
        steps, vals = study.eval_curve(folder)
        if name == "char":
            bpc = [v / math.log(2.0) for v in vals]
        else:
            bpc = [words.bits_per_char(v, meta) for v in vals]
        last = max(steps) if steps else 1
        curves[name] = {"fraction": [s / last for s in steps], "bits_per_char": bpc}
        if name == "word":
            curves["word, unknowns free"] = {
                "fraction": curves["word"]["fraction"],
                "bits_per_char": [words.bits_per_char(v, meta, spell_unknowns=False) for v in vals],
            }
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for name, c in curves.items():
        ax.plot(c["fraction"], c["bits_per_char"], marker="o", label=name,
                ls="--" if "free" in name else "-")  # fmt: skip
    ax.set_xlabel("fraction of the training steps (equal wall time)")
    ax.set_ylabel("validation bits per character")
    ax.set_title("char vs word LM at matched parameters and time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = pathlib.Path(workdir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "char_vs_word.png")
    plt.close(fig)
    metrics.write_json(out / "char_vs_word.json", curves)
