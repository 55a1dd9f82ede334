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

The schema. Every key of :func:`get_config` has one entry in :data:`SCHEMA`: a :class:`Rule`
giving its type and valid range -- ``Rule(int, low=1)`` for sizes and lengths (``_SIZE``),
``Rule(int, low=0)`` for counts where 0 means off/all (``_COUNT``), ``Rule(float, low=0,
low_open=True)`` for rates (``> 0``), ``[0, 1)`` for dropout/momentum/decays, ``(0, 1)`` for
``data.val_fraction``, ``Rule(str, choices=...)`` for enum keys (a tuple, or a function for
registries: cells, architectures, datasets). Floats must be finite. :func:`validate` checks
every entry and then what one key cannot say alone: the warmup shorter than the run,
``data.path`` a regular text file under :data:`MAX_TEXT_BYTES` (not ``/dev/zero``, a folder or
a binary file), ``model.cell_options`` against the cell's fields and their annotated types
(then the cell is constructed, so its own checks run), ``data.options`` against the dataset
factory's parameters, and a model that reads later steps refused for a next-token loss. It
raises :class:`ConfigError` naming the key, what was expected, what was given and what to do;
:class:`UserError` is the family the CLI reports in one line with exit status 2. The registry
(``rnnlab run``) and the trainer both call it before any work. A key added to
:func:`get_config` needs its :data:`SCHEMA` entry (``tests/test_config.py`` checks).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib
import inspect
import math
import pathlib
from collections.abc import Callable, Sequence

import ml_collections

OPEN_DICTS = ("model.cell_options", "data.options")


class UserError(Exception):
    """Base of the errors that mean "bad input", not "bug": the CLI prints their message (one
    to three lines: what was expected, what was given, what to do) and exits with status 2;
    any other exception keeps its traceback."""


class ConfigTypeError(UserError, TypeError, ValueError):
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
    # Recurrent regularizers (docs/regularization.md): each a drop probability in [0, 1), 0 off;
    # inverted dropout (no scaling at evaluation); masks drawn from the step's dropout rng
    c.model.embed_dropout = 0.0  # whole rows (word types) of the embedding table; token inputs
    c.model.variational_dropout_in = 0.0  # locked: the RNN's input, one mask per sequence
    c.model.variational_dropout_out = 0.0  # locked: every RNN layer's output, one per sequence
    c.model.recurrent_dropout = 0.0  # locked mask on h_{t-1} entering W_h (elman/lstm/gru/lnlstm)
    c.model.zoneout_c = 0.0  # zoneout on the LSTM cell c: keep c_{t-1} w.p. p (lstm, lnlstm)
    c.model.zoneout_h = 0.0  # zoneout on h: keep h_{t-1} w.p. p (eval: p h_{t-1} + (1-p) h_t)
    c.model.weight_drop = 0.0  # DropConnect on W_h, one mask per batch (cells with W_h)
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
    c.optim.weight_decay = 0.0  # adamw: decoupled; others: L2, g + wd * p (rnnlab.optim)
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
    # synthetic tasks: training lengths over steps, "" none, or "((0, 50), (500, 100))": from
    # step 0 length 50, from step 500 length 100 (rnnlab.data.tasks.parse_curriculum)
    c.train.curriculum = ""
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


class ConfigError(UserError, ValueError):
    """A config value out of its key's valid range, or a key no component would use."""


@dataclasses.dataclass(frozen=True)
class Rule:
    """A key's type and valid range: ``low <= value <= high`` (``<`` where ``*_open``), or one
    of ``choices`` (a tuple, or a function returning one, for registries filled at import)."""

    type: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple | Callable[[], Sequence] | None = None

    def allowed(self) -> tuple | None:
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def describe(self) -> str:
        choices = self.allowed()
        if choices is not None:
            return "one of " + ", ".join(map(str, choices))
        what = {bool: "a bool", int: "an int", float: "a finite float", str: "a str",
                tuple: "a tuple"}[self.type]  # fmt: skip
        lo = None if self.low is None else ("> " if self.low_open else ">= ") + f"{self.low:g}"
        hi = None if self.high is None else ("< " if self.high_open else "<= ") + f"{self.high:g}"
        if lo and hi:
            return f"{what} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}" + (
                ")" if self.high_open else "]"
            )
        return f"{what} {lo or hi}" if (lo or hi) else what

    def ok(self, value) -> bool:
        if self.type is bool:
            return isinstance(value, bool)
        if self.type in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            if self.type is int and not isinstance(value, int):
                return False
            if isinstance(value, float) and not math.isfinite(value):
                return False
            if self.low is not None and (value <= self.low if self.low_open else value < self.low):
                return False
            if self.high is not None and (
                value >= self.high if self.high_open else value > self.high
            ):
                return False
            return True
        if self.type is tuple:  # its entries are the owner's to check (rnnlab.optim)
            return isinstance(value, (tuple, list))
        if not isinstance(value, self.type):
            return False
        choices = self.allowed()
        return choices is None or value in choices


def _cells() -> list[str]:
    from rnnlab import cells

    return cells.names()


def _architectures() -> list[str]:
    from rnnlab import models

    return sorted(models.ARCHITECTURES)


def _datasets() -> list[str]:
    from rnnlab import data

    return data.names()


def _one_of(*values) -> Rule:
    return Rule(str, choices=values)


_SIZE = Rule(int, low=1)  # sizes, lengths, counts that must be positive
_COUNT = Rule(int, low=0)  # counts where 0 means "off" / "all" (see the key's comment)
_FLAG = Rule(bool)
_POSITIVE = Rule(float, low=0, low_open=True)
_NONNEG = Rule(float, low=0)
_UNIT = Rule(float, low=0, high=1, high_open=True)  # [0, 1): dropout, momentum, decays

#: every key of :func:`get_config` with its type and valid range (0-means-off keys say so in
#: their comment there). :func:`validate` checks each; a test checks none is missing.
SCHEMA: dict[str, Rule] = {
    "seed": _COUNT,
    "model.architecture": Rule(str, choices=_architectures),
    "model.cell": Rule(str, choices=_cells),
    "model.hidden_size": _SIZE,
    "model.num_layers": _SIZE,
    "model.bidirectional": _FLAG,
    "model.dropout": _UNIT,
    "model.embed_dropout": _UNIT,
    "model.variational_dropout_in": _UNIT,
    "model.variational_dropout_out": _UNIT,
    "model.recurrent_dropout": _UNIT,
    "model.zoneout_c": _UNIT,
    "model.zoneout_h": _UNIT,
    "model.weight_drop": _UNIT,
    "model.residual": _FLAG,
    "model.embed_dim": _SIZE,
    "model.initial_carry": _one_of("zeros", "learned"),
    "model.remat": _one_of("none", "step", "chunked"),
    "model.unroll": _SIZE,
    "model.backward": _one_of("auto", "autodiff", "fused"),
    "model.scan": _one_of("auto", "sequential", "associative"),
    "model.attention": _FLAG,
    "model.attention_size": _SIZE,
    "model.block_depth": _SIZE,
    "model.mlp_width": _COUNT,
    "model.norm": _one_of("rms", "layer"),
    "model.conv_width": _COUNT,
    "data.name": Rule(str, choices=_datasets),
    "data.path": Rule(str),  # and, for datasets that read it, a readable text file: below
    "data.seq_length": _SIZE,
    "data.batch_size": _SIZE,
    "data.val_fraction": Rule(float, low=0, high=1, low_open=True, high_open=True),
    "data.eval_batches": _COUNT,
    "optim.name": _one_of("adam", "adamw", "sgd", "rmsprop", "adagrad"),
    "optim.learning_rate": _POSITIVE,
    "optim.schedule": _one_of("constant", "warmup_cosine", "exponential"),
    "optim.warmup_steps": _COUNT,  # and < train.num_steps for warmup_cosine (rnnlab.optim)
    "optim.decay_rate": Rule(float, low=0, high=1, low_open=True),
    "optim.decay_start_step": _COUNT,
    "optim.decay_every_steps": _SIZE,
    "optim.clip": _one_of("global_norm", "elementwise", "none"),
    "optim.clip_value": _POSITIVE,
    "optim.weight_decay": _NONNEG,
    "optim.momentum": _UNIT,
    "optim.rmsprop_decay": _UNIT,
    "optim.eps": _NONNEG,
    "optim.lr_groups": Rule(tuple),  # ((regex, factor > 0), ...): checked by rnnlab.optim
    "train.num_steps": _SIZE,  # 0 only where an experiment plans the count (validate(planned))
    "train.time_limit_s": _NONNEG,
    "train.eval_every": _SIZE,
    "train.log_every": _SIZE,
    "train.checkpoint_every": _COUNT,
    "train.keep_checkpoints": _SIZE,
    "train.num_seeds": _SIZE,
    "train.progress": _FLAG,
    "train.tensorboard": _FLAG,
    "train.probe_every": _COUNT,
    "train.curriculum": Rule(str),  # "" or ((step, length), ...): rnnlab.data.tasks parses it
    "train.divergence_factor": Rule(float, low=0),  # 0: off; else > 1 (checked below)
    "train.divergence_patience": _SIZE,
}

#: the largest text file a dataset may read (it is held in memory, then as int32 ids: 5x)
MAX_TEXT_BYTES = 512 * 2**20


def _fail(key: str, expected: str, value, hint: str | None = None) -> None:
    hint = hint or f"set {key}=VALUE with a valid value (the default is {_default(key)!r})"
    what = key if key.startswith("-") else f"config key {key!r}"  # a flag names itself
    raise ConfigError(f"{what} expects {expected}, got {value!r}; {hint}")


def _default(key: str):
    try:
        return _get(get_config(), key)
    except (KeyError, AttributeError):
        return None


def validate(config: ml_collections.ConfigDict, *, planned=(), dataset=None) -> None:
    """Check every key's type and valid range before any work; raise :class:`ConfigError`.

    Checks, in order: each :data:`SCHEMA` key present in ``config`` against its :class:`Rule`
    (keys named in ``planned`` may also be 0: the experiment sets them before training, as
    char-rnn plans ``train.num_steps``); the cross-key rules (warmup shorter than the run, a
    divergence factor above 1); ``data.path`` as a readable text file for the datasets that
    read one (:func:`check_text_file`); ``model.cell_options`` against the cell's fields
    (:func:`check_cell_options`); ``data.options`` against the dataset factory's parameters
    (:func:`check_data_options`); and, for a model that reads later steps (bidirectional),
    that the dataset's loss is not next-token prediction (:func:`rnnlab.models.check_causal`;
    the dataset is built from the config unless given).
    """
    for key, rule in SCHEMA.items():
        try:
            value = _get(config, key)
        except (KeyError, AttributeError):
            continue  # a trimmed config (tests, old runs): the components use their defaults
        if key in planned and value == 0:
            continue
        if not rule.ok(value):
            _fail(key, rule.describe(), value)
    t, o = config.train, config.optim
    if o.schedule == "warmup_cosine" and not o.warmup_steps < max(t.num_steps, 1):
        if "train.num_steps" not in planned or t.num_steps != 0:
            _fail(
                "optim.warmup_steps",
                f"fewer steps than train.num_steps={t.num_steps} (warmup_cosine)",
                o.warmup_steps,
            )
    factor = t.get("divergence_factor", 0.0)
    if factor and factor <= 1:
        _fail("train.divergence_factor", "0 (off) or a float > 1", factor)
    takes = _factory_params(config.data.name)
    if "path" in takes and config.data.path:
        check_text_file(config.data.path, what="data.path", names=True)
    check_cell_options(config.model.cell, config.model.hidden_size, config.model.cell_options)
    check_data_options(config.data.name, config.data.options)
    if dataset is not None or config.model.bidirectional:
        from rnnlab import data as data_lib
        from rnnlab import models
        from rnnlab.train import data_kwargs

        if dataset is None:
            dataset = data_lib.make(config.data.name, **data_kwargs(config))
        models.check_causal(config.model, dataset)


def check_text_file(path, *, what: str, names: bool = False) -> None:
    """``path`` is a regular, non-empty file of at most :data:`MAX_TEXT_BYTES` that does not
    look binary (no NUL byte in its first 64 KiB); ``names``: corpus names are fine too.

    Refuses devices (``/dev/zero`` would be read until memory runs out), FIFOs and directories
    before anything reads them. Raises :class:`ConfigError` naming ``what``.
    """
    from rnnlab.data import corpora

    text = str(path)
    if names and (text in corpora.CORPORA or text in corpora.DEFAULT_NAMES):
        return
    known = ", ".join(sorted(corpora.CORPORA))
    p = pathlib.Path(text).expanduser()
    expected = f"a UTF-8 text file{f' or a corpus name ({known})' if names else ''}"
    if not p.exists():
        _fail(what, expected, text, "no such file: check the path")
    if p.is_dir():
        _fail(what, expected, text, "that is a directory: name a file inside it")
    if not p.is_file():
        _fail(what, expected, text, "that is not a regular file (a device or pipe)")
    size = p.stat().st_size
    if size > MAX_TEXT_BYTES:
        _fail(
            what,
            f"{expected} of at most {MAX_TEXT_BYTES // 2**20} MiB",
            text,
            f"it has {size / 2**20:.0f} MiB: cut it to size (e.g. head -c 500M)",
        )
    with open(p, "rb") as f:
        head = f.read(65536)
    if b"\x00" in head:
        _fail(what, expected, text, f"it looks binary (a NUL byte at offset {head.index(0)})")


# the cell fields a config sets elsewhere (model.hidden_size, the model's dtype)
_RESERVED_CELL_FIELDS = ("hidden_size", "dtype", "param_dtype", "parent", "name")


def check_cell_options(cell, hidden_size: int, options) -> None:
    """``model.cell_options`` against the fields of cell ``cell``: each name a field, each
    value of the field's annotated type; then the cell is constructed (no params), so its own
    checks (``activation`` one of ..., ``chrono_tmax > 2``) run now, not mid-trace."""
    from rnnlab import cells

    options = dict(options.to_dict() if hasattr(options, "to_dict") else options or {})
    try:
        cls = cells.get(cell) if isinstance(cell, str) else cell
    except KeyError as err:
        raise ConfigError(f"config key 'model.cell': {err.args[0]}") from None
    fields = {k: f for k, f in cls.__dataclass_fields__.items() if k not in _RESERVED_CELL_FIELDS}
    for name, value in options.items():
        key = f"model.cell_options.{name}"
        if name in _RESERVED_CELL_FIELDS:
            _fail(key, f"an option of cell {cell!r}", value, f"set model.{name} instead")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            raise ConfigError(
                f"cell {cell!r} has no option {name!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; its options: {', '.join(fields)}"
            )
        expected = _annotation_types(fields[name].type)
        if expected is not None and not _is_instance(value, expected):
            default = fields[name].default
            _fail(key, _describe_types(expected), value, f"the cell's default is {default!r}")
    try:  # unbound (parent=None): the cell's __post_init__ checks run, no params are made
        cls(hidden_size=int(hidden_size), **options, parent=None)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"model.cell_options for cell {cell!r}: {err}") from None


def _factory_params(name: str) -> dict[str, inspect.Parameter]:
    from rnnlab import data

    if name not in data.REGISTRY:
        return {}
    module, factory = data.REGISTRY[name].split(":")
    fn = getattr(importlib.import_module(f"rnnlab.data.{module}"), factory)
    return dict(inspect.signature(fn).parameters)


# keys every dataset gets from the config's data section (rnnlab.train.data_kwargs)
_COMMON_DATA_KEYS = ("path", "seq_length", "batch_size", "val_fraction", "eval_batches")


def check_data_options(name: str, options) -> None:
    """``data.options`` against the parameters of dataset ``name``'s factory: each name a
    parameter (not one the data section sets: ``data.seq_length`` etc.), each value of the
    parameter's type (its annotation, else its default's)."""
    options = dict(options.to_dict() if hasattr(options, "to_dict") else options or {})
    params = _factory_params(name)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return  # the factory takes anything: it checks its own keywords
    valid = [k for k in params if k not in (*_COMMON_DATA_KEYS, "seed")]
    for opt, value in options.items():
        key = f"data.options.{opt}"
        if opt in _COMMON_DATA_KEYS:
            _fail(key, f"an option of dataset {name!r}", value, f"set data.{opt} instead")
        if opt == "seed":
            _fail(key, f"an option of dataset {name!r}", value, "set seed instead")
        if opt not in params:
            close = difflib.get_close_matches(opt, valid, n=1)
            raise ConfigError(
                f"dataset {name!r} takes no option {opt!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; its options: {', '.join(valid) or '(none)'}"
            )
        param = params[opt]
        expected = _annotation_types(param.annotation)
        if expected is None and param.default is not inspect.Parameter.empty:
            expected = _annotation_types(type(param.default).__name__)
        if expected is not None and not _is_instance(value, expected):
            _fail(key, _describe_types(expected), value, f"the default is {param.default!r}")


_TYPE_NAMES = {"float": float, "int": int, "str": str, "bool": bool, "None": type(None),
               "NoneType": type(None)}  # fmt: skip


def _annotation_types(annotation) -> tuple | None:
    """``"float | None"`` (or the type itself) -> ``(float, NoneType)``; ``None`` when the
    annotation is anything else (``Any``, a class): then any value is left to the component."""
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, type):
        annotation = annotation.__name__
    parts = [p.strip() for p in str(annotation).split("|")]
    if not all(p in _TYPE_NAMES for p in parts):
        return None
    return tuple(_TYPE_NAMES[p] for p in parts)


def _is_instance(value, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, (int, float)) and float in types:
        return math.isfinite(value)
    return isinstance(value, types)


def _describe_types(types: tuple) -> str:
    names = {float: "a finite float", int: "an int", str: "a str", bool: "a bool",
             type(None): "None"}  # fmt: skip
    return " or ".join(names[t] for t in types)
