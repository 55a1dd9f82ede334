"""Optimizers, schedules and gradient clipping, all from Optax (nothing hand-written).

:func:`make` turns the config's ``optim`` section into ``(optax.GradientTransformation,
schedule)``: the chain is ``clip -> optimizer(learning_rate=schedule)``.

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

Optimizers (``name``): ``adam``, ``adamw`` (decoupled ``weight_decay``), ``sgd`` (``momentum``,
0 for plain SGD), ``rmsprop`` (char-rnn's: decay ``rmsprop_decay`` = 0.95, eps inside the
square root as in torch/optim's rmsprop), ``adagrad`` (min-char-rnn's).
"""

from __future__ import annotations

from collections.abc import Callable

import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adagrad")
SCHEDULES = ("constant", "warmup_cosine", "exponential")
CLIPS = ("global_norm", "elementwise", "none")


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"optim.{name} must be one of {', '.join(allowed)}; got {value!r}")


def schedule(optim, num_steps: int) -> Callable[[int], float]:
    """The learning-rate schedule ``n -> lr`` for ``optim`` (the config's ``optim`` section)."""
    _check("schedule", optim.schedule, SCHEDULES)
    lr = float(optim.learning_rate)
    if optim.schedule == "constant":
        return optax.constant_schedule(lr)
    if optim.schedule == "warmup_cosine":
        if not 0 <= optim.warmup_steps < max(num_steps, 1):
            raise ValueError(
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
        raise ValueError(f"optim.decay_every_steps must be >= 1, got {optim.decay_every_steps}")
    if optim.decay_start_step < 0:
        raise ValueError(f"optim.decay_start_step must be >= 0, got {optim.decay_start_step}")
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
    """``(clip -> optimizer)`` chain and its schedule, from the config's ``optim`` section."""
    _check("name", optim.name, OPTIMIZERS)
    _check("clip", optim.clip, CLIPS)
    if optim.clip != "none" and not optim.clip_value > 0:
        raise ValueError(f"optim.clip_value must be > 0, got {optim.clip_value}")
    lr = schedule(optim, num_steps)
    eps = float(optim.eps)
    if optim.name == "adam":
        opt = optax.adam(lr, eps=eps)
    elif optim.name == "adamw":
        opt = optax.adamw(lr, eps=eps, weight_decay=float(optim.weight_decay))
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
    return optax.chain(clip, opt), lr
