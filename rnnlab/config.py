"""The base config: every key once, with its default and a one-line comment, returned locked.

Experiments start from :func:`get_config` and change what they need; the CLI passes
``key=value`` strings through :func:`apply_overrides`. A misspelt key fails with a "did you
mean" message, a wrongly typed value names the expected and the given type. Two sections are
open dicts whose keys belong to someone else and are validated there:

* ``model.cell_options`` -- keyword arguments of the cell (``rnnlab.cells``), e.g.
  ``model.cell_options.forget_bias=2.0``; the cell rejects unknown options;
* ``data.options`` -- keyword arguments of the dataset constructor (``rnnlab.data.make``).

Values going into the open dicts are parsed as Python literals (``ast.literal_eval``), falling
back to the raw string. The trainer never mutates a config: it works on a copy.
"""

from __future__ import annotations

import ast
import difflib

import ml_collections

OPEN_DICTS = ("model.cell_options", "data.options")


class ConfigTypeError(TypeError, ValueError):
    """A value that does not parse as its key's type (a ValueError too, for callers that
    catch bad input as ValueError, like the CLI)."""


def get_config() -> ml_collections.ConfigDict:
    """The base config (locked; the open dicts stay unlocked)."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # init and dropout seed; seed i of num_seeds uses seed + i, data uses seed

    c.model = ml_collections.ConfigDict()
    c.model.architecture = "sequence"  # rnnlab.models.ARCHITECTURES key (the dataset may fix it)
    c.model.cell = "lstm"  # rnnlab.cells.names() entry
    c.model.hidden_size = 128  # H, units per layer and direction
    c.model.num_layers = 1  # stacked recurrent layers
    c.model.bidirectional = False  # add a backward direction (not for language models)
    c.model.dropout = 0.0  # between layers and before the head
    c.model.residual = False  # y_l = f_l(x_l) + x_l where widths match
    c.model.embed_dim = 64  # embedding width for token inputs
    c.model.initial_carry = "zeros"  # zeros | learned (learned is used by "batch" datasets)
    c.model.remat = "none"  # none | step | chunked (sqrt(T) chunks: the big memory saver)
    c.model.unroll = 1  # jax.lax.scan unroll factor
    c.model.backward = "auto"  # auto | autodiff | fused (one-matmul weight grads; rnnlab.unroll)
    c.model.scan = "auto"  # auto | sequential | associative (linear-recurrence cells)
    c.model.attention = False  # seq2seq: Bahdanau additive attention over the encoder outputs
    c.model.attention_size = 64  # seq2seq: width of the attention's query/key projections
    # architecture=block (rnnlab/blocks.py): residual blocks norm -> conv -> cell -> gated MLP
    c.model.block_depth = 2  # block: residual blocks, one recurrent layer each (>= 1)
    c.model.mlp_width = 0  # block: gated-MLP width (>= 0; 0: 3 * hidden_size, Hawk's)
    c.model.norm = "rms"  # block: pre-normalization, rms (RMSNorm) | layer (LayerNorm)
    c.model.conv_width = 4  # block: causal temporal Conv1D width before the cell (0: off)
    c.model.cell_options = ml_collections.ConfigDict()  # open: kwargs for the cell

    c.data = ml_collections.ConfigDict()
    c.data.name = "text"  # rnnlab.data.names() entry
    c.data.path = ""  # text corpus: "" default corpus, "tinyshakespeare", or a file path
    c.data.seq_length = 50  # T, time steps per chunk (the truncated-BPTT window)
    c.data.batch_size = 50  # B, global batch (streams for text), divisible by device count
    c.data.val_fraction = 0.1  # fraction of the data held out for validation
    c.data.eval_batches = 0  # validation batches per eval (0: the whole validation set)
    c.data.options = ml_collections.ConfigDict()  # open: dataset-specific kwargs

    c.optim = ml_collections.ConfigDict()
    c.optim.name = "adam"  # adam | adamw | sgd | rmsprop | adagrad
    c.optim.learning_rate = 2e-3  # peak learning rate
    c.optim.schedule = "constant"  # constant | warmup_cosine | exponential
    c.optim.warmup_steps = 0  # warmup_cosine: linear warmup steps
    c.optim.decay_rate = 0.97  # exponential: factor per decay_every_steps (char-rnn 0.97)
    c.optim.decay_start_step = 0  # exponential: first decayed update (char-rnn: 10 epochs)
    c.optim.decay_every_steps = 1000  # exponential: steps per decay (char-rnn: one epoch)
    c.optim.clip = "global_norm"  # global_norm | elementwise | none
    c.optim.clip_value = 5.0  # max global norm, or max |g| per element
    c.optim.weight_decay = 0.0  # adamw decoupled weight decay
    c.optim.momentum = 0.9  # sgd momentum (0: plain sgd)
    c.optim.rmsprop_decay = 0.95  # rmsprop squared-gradient decay (char-rnn alpha 0.95)
    c.optim.eps = 1e-8  # adam/rmsprop/adagrad epsilon
    c.optim.lr_groups = ()  # ((param-path regex, lr factor > 0), ...): own learning rates

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000  # optimizer steps in total (a resumed run continues to this)
    c.train.time_limit_s = 0.0  # stop early at a step boundary after this long (0: no limit)
    c.train.eval_every = 200  # steps between validation passes (and at the end)
    c.train.log_every = 50  # steps between log lines / metrics.jsonl train records
    c.train.checkpoint_every = 500  # steps between checkpoints (and at the end; 0: end only)
    c.train.keep_checkpoints = 3  # latest checkpoints kept, plus the best by val loss
    c.train.num_seeds = 1  # independently initialized models trained together (vmap)
    c.train.progress = True  # tqdm progress bar
    c.train.tensorboard = False  # TensorBoard event files (needs tensorboardX)
    c.train.probe_every = 0  # steps between probe hooks (0: at every eval)
    # divergence guard (rnnlab.train): stop when the logged train loss of a seed stays above
    # divergence_factor x its best so far for divergence_patience steps (factor 0: off)
    c.train.divergence_factor = 10.0
    c.train.divergence_patience = 500

    c.lock()
    for path in OPEN_DICTS:
        _get(c, path).unlock()
    return c


# ---------------------------------------------------------------------------- overrides


def _get(config, path: str):
    node = config
    for part in path.split("."):
        node = node[part]
    return node


def _leaf_keys(config, prefix: str = "") -> list[str]:
    keys = []
    for k, v in config.items():
        full = f"{prefix}{k}"
        if isinstance(v, ml_collections.ConfigDict) and full not in OPEN_DICTS:
            keys += _leaf_keys(v, full + ".")
        else:
            keys.append(full)
    return keys


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_value(key: str, text: str, current):
    """Parse ``text`` as the type of ``current`` (the key's value now)."""
    if isinstance(current, bool):
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigTypeError(f"config key {key!r} expects a bool (true/false), got {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigTypeError(f"config key {key!r} expects an int, got {text!r}") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigTypeError(f"config key {key!r} expects a float, got {text!r}") from None
    if isinstance(current, str):
        return text
    if isinstance(current, ml_collections.ConfigDict):
        value = _literal(text)
        if not isinstance(value, dict):
            raise ConfigTypeError(f"config key {key!r} expects a dict literal, got {text!r}")
        return value
    return _literal(text)  # None-valued keys: any literal


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> ml_collections.ConfigDict:
    """Apply ``["model.hidden_size=256", ...]`` to ``config`` (in place) and return it.

    Raises:
      KeyError: unknown key, with the closest known key ("did you mean").
      ConfigTypeError (a TypeError and a ValueError): a value that does not parse as the
        key's type (names the expected type and the given text).
      ValueError: an override without ``=``.
    """
    known = _leaf_keys(config)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override must look like key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        open_dict = next((p for p in OPEN_DICTS if key.startswith(p + ".")), None)
        if open_dict is not None:
            sub = key[len(open_dict) + 1 :]
            if not sub or "." in sub:
                raise KeyError(f"bad key {key!r}: expected {open_dict}.NAME")
            _get(config, open_dict)[sub] = _literal(text)
            continue
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"unknown config key {key!r}.{hint}")
        parent_path, _, name = key.rpartition(".")
        parent = _get(config, parent_path) if parent_path else config
        value = parse_value(key, text, parent[name])
        if isinstance(parent[name], ml_collections.ConfigDict):  # replace an open dict whole
            node = parent[name]
            for k in list(node.keys()):
                del node[k]
            for k, v in value.items():
                node[k] = v
        else:
            parent[name] = value
    return config


# ---------------------------------------------------------------------------- validation


class ConfigError(ValueError):
    """A config value out of its key's valid range, or a key no component would use."""


def validate(config: ml_collections.ConfigDict) -> None:
    """Check every key's type and valid range before any work; raise :class:`ConfigError`."""
