"""Optimizers, schedules and gradient clipping, all from Optax (nothing hand-written).

:func:`make` turns the config's ``optim`` section into ``(optax.GradientTransformation,
schedule)``: the chain is ``clip -> [weight decay] -> optimizer(learning_rate=schedule)``.

Clipping (``clip``):

* ``global_norm``: g <- g * min(1, c / ||g||_2) over all leaves (Pascanu et al. 2013);
  ``optax.clip_by_global_norm``. The trainer reports the *pre-clip* norm
  ``optax.global_norm(grads)``;
* ``elementwise``: g_i <- clip(g_i, -c, c) (char-rnn, min-char-rnn); ``optax.clip``;
* ``none``.

Schedules (``schedule``), as functions of the optimizer step n (0 for the first update):

* ``constant``: lr;
* ``warmup_cosine``: linear 0 -> lr over ``warmup_steps``, then cosine to 0 at ``num_steps``
  (``optax.warmup_cosine_decay_schedule``);
* ``exponential``: lr before ``start``, then lr * rate^(1 + floor((n - start) / every))
  (staircase: the first decay applies from update ``start`` on, then one more every ``every``).
  char-rnn's "x0.97 per epoch after epoch 10" (train.lua decays after the last update of each
  epoch >= 10) is ``decay_rate=0.97``, ``decay_every_steps=steps_per_epoch``,
  ``decay_start_step=10 * steps_per_epoch``.

Optimizers (``name``): ``adam``, ``adamw``, ``sgd`` (``momentum``, 0 for plain SGD),
``rmsprop`` (char-rnn's: decay ``rmsprop_decay`` = 0.95, eps inside the square root as in
torch/optim's rmsprop), ``adagrad`` (min-char-rnn's).

Weight decay (``weight_decay`` = lambda, every optimizer): ``adamw`` decays decoupled from the
adaptive step, ``p <- p - lr * (adam_update + lambda * p)`` (Loshchilov & Hutter 2019; inside
``optax.adamw``); every other optimizer gets ``g <- g + lambda * p`` before it
(``optax.add_decayed_weights``: L2 regularization, the torch ``weight_decay=`` of SGD, RMSprop,
Adagrad and Adam), after clipping, so the clip bounds the loss gradient only.

Parameter groups (``lr_groups``): ``((pattern, factor), ...)``; a parameter whose path
(``"rnn/layer_0/fwd/params/nu_log"``) matches ``pattern`` (``re.search``; the first match wins)
trains with learning rate ``factor * lr``. Every optimizer here is linear in its learning rate,
so this is ``optax.multi_transform`` of ``optax.scale(factor)`` on the groups' updates, chained
last (e.g. LRU's ``nu_log|theta_log|gamma_log`` at a reduced rate, as minimal-LRU's "ssm"
group). A pattern that matches no parameter is an error.

Constraints (:func:`constrain`): after every update the trainer replaces each recurrent layer's
params ``p`` by ``cell.project_params(p)`` when the cell defines it (a projection onto the
feasible set; IndRNN's ``|u| <= magnitude^(1/T)``, Li et al. 2018), so the gradient is the
unconstrained one and a weight that crosses the bound is put back on it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import jax
import optax

from rnnlab import cells
from rnnlab.config import ConfigError

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "warmup_cosine", "exponential")
CLIPS = ("global_norm", "elementwise", "none")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"optim.{name} must be one of {', '.join(allowed)}; got {value!r}")


def schedule(optim, num_steps: int) -> Callable[[int], float]:
    """The learning-rate schedule ``n -> lr`` for ``optim`` (the config's ``optim`` section)."""
    _check("schedule", optim.schedule, SCHEDULES)
    lr = float(optim.learning_rate)
    if optim.schedule == "constant":
        return optax.constant_schedule(lr)
    if optim.schedule == "warmup_cosine":
        if not 0 <= optim.warmup_steps < max(num_steps, 1):
            raise ConfigError(
                f"optim.warmup_steps must lie in [0, train.num_steps={num_steps}), "
                f"got {optim.warmup_steps}"
            )
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=lr,
            warmup_steps=int(optim.warmup_steps),
            decay_steps=max(int(num_steps), 1),
            end_value=0.0,
        )
    if optim.decay_every_steps < 1:
        raise ConfigError(f"optim.decay_every_steps must be >= 1, got {optim.decay_every_steps}")
    if optim.decay_start_step < 0:
        raise ConfigError(f"optim.decay_start_step must be >= 0, got {optim.decay_start_step}")
    decayed = optax.exponential_decay(
        init_value=lr * float(optim.decay_rate),
        transition_steps=int(optim.decay_every_steps),
        decay_rate=float(optim.decay_rate),
        staircase=True,
    )
    return optax.join_schedules(
        [optax.constant_schedule(lr), decayed], boundaries=[int(optim.decay_start_step)]
    )


def make(optim, num_steps: int) -> tuple[optax.GradientTransformation, Callable]:
    """``(clip -> [weight decay] -> optimizer)`` and its schedule, from the ``optim`` section."""
    _check("name", optim.name, OPTIMIZERS)
    _check("clip", optim.clip, CLIPS)
    if optim.clip != "none" and not optim.clip_value > 0:
        raise ConfigError(f"optim.clip_value must be > 0, got {optim.clip_value}")
    wd = float(optim.weight_decay)
    if not wd >= 0:
        raise ConfigError(f"optim.weight_decay must be >= 0, got {optim.weight_decay}")
    lr = schedule(optim, num_steps)
    eps = float(optim.eps)
    if optim.name == "adam":
        opt = optax.adam(lr, eps=eps)
    elif optim.name == "adamw":
        opt = optax.adamw(lr, eps=eps, weight_decay=wd)
    elif optim.name == "sgd":
        opt = optax.sgd(lr, momentum=float(optim.momentum) or None)
    elif optim.name == "rmsprop":
        opt = optax.rmsprop(lr, decay=float(optim.rmsprop_decay), eps=eps)
    else:
        opt = optax.adagrad(lr, eps=eps)
    clip = {
        "global_norm": lambda: optax.clip_by_global_norm(float(optim.clip_value)),
        "elementwise": lambda: optax.clip(float(optim.clip_value)),
        "none": optax.identity,
    }[optim.clip]()
    groups = [param_groups(optim.lr_groups)] if optim.lr_groups else []  # scaled updates, last
    if wd and optim.name != "adamw":  # L2: g + lambda * p, what the optimizer then scales
        return optax.chain(clip, optax.add_decayed_weights(wd), opt, *groups), lr
    return optax.chain(clip, opt, *groups), lr


def param_groups(spec) -> optax.GradientTransformation:
    """``optax.multi_transform`` scaling the updates of each ``(pattern, factor)`` group of
    ``spec`` by ``factor`` (its own learning rate) and leaving the rest as they are."""
    pairs = list(spec)
    for pair in pairs:
        ok = isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)
        if not ok or not isinstance(pair[1], (int, float)) or not pair[1] > 0:
            raise ConfigError(
                "optim.lr_groups must be ((pattern, factor > 0), ...), e.g. "
                f"(('nu_log|theta_log', 0.5),); got {spec!r}"
            )
        try:
            re.compile(pair[0])
        except re.error as err:
            raise ConfigError(f"optim.lr_groups: bad pattern {pair[0]!r}: {err}") from None

    def labels(params):
        paths = [(p, "/".join(str(getattr(k, "key", k)) for k in p))
                 for p, _ in jax.tree_util.tree_leaves_with_path(params)]  # fmt: skip
        found = {i: 0 for i in range(len(pairs))}

        def label(path):
            for i, (pattern, _) in enumerate(pairs):
                if re.search(pattern, path):
                    found[i] += 1
                    return f"group_{i}"
            return "rest"

        names = {p: label(name) for p, name in paths}
        unused = [pairs[i][0] for i, n in found.items() if n == 0]
        if unused:
            raise ConfigError(
                f"optim.lr_groups pattern(s) {unused} match no parameter; the paths look like "
                f"{[name for _, name in paths[:4]]}"
            )
        return jax.tree_util.tree_map_with_path(lambda p, _: names[p], params)

    transforms = {f"group_{i}": optax.scale(float(f)) for i, (_, f) in enumerate(pairs)}
    return optax.multi_transform({**transforms, "rest": optax.identity()}, labels)


def constrain(model, params):
    """``params`` with every recurrent layer's cell params projected by the cell's
    ``project_params(variables) -> variables`` (when it has one and its ``has_constraint``, if
    defined, is true); the trainer applies it
    after each update. Layers are found where :class:`rnnlab.engine.RNN` and the block model
    keep them, ``params["rnn"]["layer_{l}"][direction]``; a constrained cell in a model without
    that layout is refused (its constraint would otherwise be silently dropped). Projections
    act element-wise, so a leading seed axis (``train.num_seeds``) passes through.
    """
    cell_name = getattr(model, "cell", None)
    if cell_name is None:
        return params
    cls = cells.get(cell_name) if isinstance(cell_name, str) else cell_name
    cell = cls(hidden_size=model.hidden_size, **dict(getattr(model, "cell_options", None) or {}))
    if not hasattr(cell, "project_params") or not getattr(cell, "has_constraint", True):
        return params
    if "rnn" not in params or not any(k.startswith("layer_") for k in params["rnn"]):
        raise ConfigError(
            f"{type(model).__name__} keeps no recurrent layers at params['rnn']['layer_l'], so "
            f"the constraint of cell {cell_name!r} (project_params) cannot be applied"
        )
    rnn = dict(params["rnn"])
    for key, layer in rnn.items():
        if key.startswith("layer_"):
            rnn[key] = {d: cell.project_params(v) for d, v in layer.items()}
    return {**params, "rnn": rnn}
