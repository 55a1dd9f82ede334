# %% [markdown]
# # A character-level language model, end to end
#
# Andrej Karpathy's ["The Unreasonable Effectiveness of Recurrent Neural Networks"](https://karpathy.github.io/2015/05/21/rnn-effectiveness/)
# trains an LSTM to predict the next character of a text, then lets it write. This notebook
# does the same with rnnlab, in four steps:
#
# 1. **train** a small LSTM on the lab's default corpus, the Python standard library's own
#    source code (every machine with Python has it, so nothing is downloaded);
# 2. **sample** from it at several temperatures, side by side, to see what the temperature does;
# 3. **look inside**: color the text by single hidden units, and let the feature finder rank the
#    units that track quotes, brackets, indentation or comments;
# 4. do the same from the **command line** (`rnnlab run`, `rnnlab sample`, `rnnlab viz`).
#
# The committed outputs come from a real run of a few minutes on a 2-core CPU. The test suite
# re-runs this notebook with `RNNLAB_NOTEBOOK_SMOKE=1`, which shrinks every size and step count
# so that it finishes in seconds (the text it writes is then gibberish).

# %%
import html
import io
import os
import pathlib
import re
import tempfile

import matplotlib.pyplot as plt
import numpy as np
import PIL.Image
from IPython.display import HTML, Image, Markdown, display

from rnnlab import cli, metrics, registry, sample, viz
from rnnlab.data import corpora
from rnnlab.train import load_run, train_and_evaluate

from _common import SMOKE, show, size  # inlined by notebooks/_build.py


WORK = pathlib.Path(tempfile.mkdtemp(prefix="rnnlab-char-rnn-"))  # every run writes here

# %% [markdown]
# ## 1. The configuration
#
# An experiment in rnnlab is a file in `experiments/` whose `get_config(variant)` returns a
# locked `ml_collections.ConfigDict` (a misspelt key fails at once). `char-rnn` is Karpathy's
# model: a stacked LSTM over character embeddings, trained with truncated backpropagation
# through time over contiguous streams of text (the hidden state is carried from one batch to
# the next). We take its config and make it small enough to train in a couple of minutes:
# one layer of 128 LSTM units.

# %%
config = registry.load("char-rnn").get_config()
registry.apply(
    config,
    [
        f"model.num_layers={size(1, 1)}",
        f"model.hidden_size={size(128, 16)}",
        f"model.embed_dim={size(32, 8)}",
        f"data.seq_length={size(64, 16)}",
        f"data.batch_size={size(32, 4)}",
        f"data.eval_batches={size(20, 2)}",
        f"optim.warmup_steps={size(50, 1)}",
        f"train.num_steps={size(4000, 6)}",
        f"train.time_limit_s={size(180, 60)}",
        f"train.eval_every={size(400, 3)}",
        f"train.log_every={size(800, 3)}",
        f"train.checkpoint_every={size(800, 0)}",
        "train.progress=false",
    ],
)
print(config.model)
print(config.data)

# %% [markdown]
# ## 2. Training
#
# `train_and_evaluate(config, workdir)` is the whole training loop: it builds the dataset
# (the last 10% of the characters are held out for validation), the model and an Optax
# optimizer (Adam with warmup, cosine decay and global-norm clipping), and writes everything
# to the workdir: `config.json`, `metrics.jsonl`, Orbax checkpoints. Running it again on the
# same workdir resumes where it stopped.
#
# The loss is the cross-entropy of the next character in nats; a model that knew nothing
# would pay ln V (the uniform distribution over the V characters of the vocabulary).

# %%
workdir = WORK / "char-rnn"
summary = train_and_evaluate(config, workdir)
run = load_run(workdir)  # the best checkpoint (lowest validation loss)
vocab = sample.run_vocab(run)
print(f"vocabulary: {len(vocab)} characters; uniform baseline ln V = {np.log(len(vocab)):.3f} nats")
print(
    f"trained {summary['step']} steps in {summary['time_s']:.0f} s: validation loss "
    f"{summary['val_loss']:.3f} nats/char = {summary['val_loss'] / np.log(2):.3f} bits/char"
)

# %%
train_log = metrics.read_metrics(workdir, "train")
eval_log = metrics.read_metrics(workdir, "eval")
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot([r["step"] for r in train_log], [r["loss"] for r in train_log], label="train")
ax.plot([r["step"] for r in eval_log], [r["val_loss"] for r in eval_log], "o-", label="validation")
ax.axhline(np.log(len(vocab)), color="gray", linestyle=":", label="uniform (ln V)")
ax.set_xlabel("step")
ax.set_ylabel("nats per character")
ax.set_title("learning curve")
ax.legend()
show(fig)

# %% [markdown]
# ## 3. Sampling: the effect of temperature
#
# To generate, the model reads a prime text, then repeatedly draws the next character from
# $\mathrm{softmax}(\text{logits} / \tau)$ and feeds it back in. The temperature $\tau$ reshapes
# the distribution without retraining anything:
#
# * $\tau \to 0$ always picks the likeliest character (greedy): safe, but it loops;
# * $\tau = 1$ samples the model's own distribution;
# * $\tau > 1$ flattens it: more surprising, more mistakes.
#
# `rnnlab.sample.sample_text` runs the whole generation as one compiled `jax.lax.scan`.
# Same prime, same seed, four temperatures:

# %%
PRIME = "def "
temperatures = [0.2, 0.5, 1.0, 1.5]
texts = {
    t: sample.sample_text(
        run.model, run.params, vocab, PRIME, length=size(300, 40), temperature=t, seed=0
    )
    for t in temperatures
}
cells = "".join(
    f"<td style='vertical-align:top'><b>temperature {t}</b>"
    f"<pre style='font-size:10px;white-space:pre-wrap;overflow-wrap:anywhere'>{html.escape(text)}</pre></td>"
    for t, text in texts.items()
)
display(HTML(f"<table style='table-layout:fixed;width:100%'><tr>{cells}</tr></table>"))

# %% [markdown]
# A number for the same effect: how many distinct characters each sample uses, and how many of
# its words (identifiers) occur somewhere in the training corpus. Low temperatures repeat a few
# safe words; high ones invent new ones.

# %%
corpus_words = set(re.findall(r"[A-Za-z_]\w*", corpora.load(run.config.data.path or None)))
for t, text in texts.items():
    words = re.findall(r"[A-Za-z_]\w*", text[len(PRIME) :])
    real = sum(w in corpus_words for w in words)
    print(
        f"temperature {t:>4}: {len(set(text)):3d} distinct characters, {len(set(words)):3d} "
        f"distinct words, {real:3d} of {len(words):3d} words occur in the corpus"
    )

# %% [markdown]
# ## 4. Interpretable hidden units
#
# Karpathy, Johnson & Fei-Fei (2015) found single LSTM cells that track the structure of the
# text: whether we are inside quotes, how deep in brackets, how far along the line. rnnlab's
# **feature finder** measures features of the text after every character (`in_string`,
# `in_comment`, `bracket_depth`, `indent`, `line_position`, ...), runs the model over held-out
# text, and ranks the units by the absolute correlation of their activation ($\tanh(c_t)$ for
# an LSTM) with each feature.

# %%
text = viz.heldout_text(run)[: size(20_000, 600)]
acts = viz.hidden_activations(run.model, run.params, vocab.encode(text))  # [N chars, H units]
ranking = viz.rank_units(acts, viz.text_features(text), top=3)
rows = ["| feature | best units (Pearson r) |", "|---|---|"]
for feature, best in ranking.items():
    units = ", ".join(f"unit {u} ({r:+.2f})" for u, r in best) or "constant in this text"
    rows.append(f"| `{feature}` | {units} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# Now the picture: every character colored by one unit's activation after reading it (red
# +1, white 0, blue -1; hover for the value), for the three units with the strongest
# correlations above. `render_html` makes the page that `rnnlab viz` writes; here it goes inline.

# %%
strongest = sorted(
    ((abs(best[0][1]), best[0][0]) for best in ranking.values() if best), reverse=True
)
shown = list(dict.fromkeys(unit for _, unit in strongest))[:3]  # three units, best first
page = viz.render_html(
    text, acts, ranking, units=shown, num_chars=size(600, 200), title="hidden units"
)
body = page[page.index('<h2 id="unit-') :].replace("</body></html>", "")  # the colored texts
style = "<style>.text{font-family:monospace;white-space:pre-wrap;line-height:1.4;font-size:11px}</style>"
display(HTML(style + body))

# %% [markdown]
# What to look for: a `line_position` unit ramps along each line and resets at the newline (the
# model needs it to place line breaks); a `bracket_depth` unit changes level inside
# parentheses; an `in_comment` or `in_string` unit switches on after `#` or a quote and off at
# the end. Some correlations are strong (bracket depth), others modest: this is a 128-unit
# model trained for under three minutes, and Karpathy's cleanest examples came from bigger
# models trained for hours.
#
# ## 5. The same from the command line
#
# Everything above is one command each (run them in a shell; here `cli.main` runs the same
# code inside this kernel):
#
# ```
# rnnlab run char-rnn                                    # train (9 min), sample, results.json
# rnnlab sample runs/char-rnn --temperature 0.5 --prime "class "
# rnnlab viz runs/char-rnn                               # runs/char-rnn/viz/index.html
# rnnlab show runs/char-rnn
# ```

# %%
cli.main(["sample", str(workdir), "--temperature", "0.5", "--prime", "class ",
          "--length", str(size(200, 20))])  # fmt: skip
cli.main(["viz", str(workdir), "--chars", "500"])
print(sorted(p.name for p in (workdir / "viz").iterdir()))
