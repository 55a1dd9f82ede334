"""The pure functions of training: init, one optimizer update, one evaluation batch.

One update (``B`` batch, ``T`` time; a leading ``S`` on params, optimizer state, carry and
measurements when ``num_seeds > 1``)::

    carry  = carry0 if reset else stop_gradient(carry)     # truncated BPTT over streams
    (loss, aux, carry'), grads = value_and_grad(model.loss)(params, batch, carry,
                                                   dropout rng = fold_in(key_s, step))
    updates = tx(grads)                                    # rnnlab.optim: clip -> optimizer
    measurements: loss, grad_norm = ||grads||_2 (before clipping), param_norm,
                  update_ratio = ||updates|| / ||params||, lr = schedule(step), aux (accuracy)

``carry0`` is zeros, or the model's learned initial carry (``initial_carry="learned"``: the
model is called with ``carry=None`` at an epoch start). Seeds are ``jax.vmap``-ed: every seed
sees the same batch, with its own params, optimizer state, carry and dropout key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rnnlab import optim


def optax_norm(tree) -> jax.Array:
    """Global L2 norm over all leaves (``optax.global_norm``), in float32."""
    return optax.global_norm(jax.tree.map(lambda x: x.astype(jnp.float32), tree))


def make_steps(model, tx, schedule, *, stream: bool, num_seeds: int):
    """``(init, train_step, eval_step)``: pure functions the loop jits.

    ``init(key, batch) -> state`` (one seed) with ``state = {"step", "params", "opt_state"
    [, "carry"]}``;
    ``train_step(state, batch, reset, keys) -> (state, measurements)``;
    ``eval_step(params, carry, batch) -> (aux, carry)`` (``carry=None`` starts a stream). With
    ``num_seeds > 1`` params, optimizer state, carry and measurements have a leading ``[S]``
    axis; ``init`` stays one seed (``jitted_steps`` stacks them).
    """

    def loss_fn(params, batch, carry, rng, deterministic):
        return model.apply(
            {"params": params},
            batch,
            carry,
            deterministic=deterministic,
            method="loss",
            rngs=None if rng is None else {"dropout": rng},
        )

    def init_one(key, batch):
        pkey, dkey = jax.random.split(key)
        variables = model.init({"params": pkey, "dropout": dkey}, batch, None, method="loss")
        params = variables["params"]
        one = {"params": params, "opt_state": tx.init(params)}
        if stream:
            _, _, carry = jax.eval_shape(lambda: loss_fn(params, batch, None, dkey, True))
            one["carry"] = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), carry)
        return one

    learned = stream and getattr(model, "initial_carry", "zeros") == "learned"

    def grads_at(params, batch, carry, rng):
        fn = lambda p: (lambda out: (out[0], out[1:]))(loss_fn(p, batch, carry, rng, False))
        return jax.value_and_grad(fn, has_aux=True)(params)

    def train_one(params, opt_state, carry, batch, reset, key, step):
        rng = jax.random.fold_in(key, step)
        if learned:  # an epoch starts from the learned carry, later chunks from the last one
            carry = jax.lax.stop_gradient(carry)
            out = jax.lax.cond(
                reset,
                lambda: grads_at(params, batch, None, rng),
                lambda: grads_at(params, batch, carry, rng),
            )
        else:
            if stream:  # zero at an epoch start; no gradient flows into the previous chunk
                carry = jax.tree.map(lambda c: jnp.where(reset, jnp.zeros_like(c), c), carry)
                carry = jax.lax.stop_gradient(carry)
            out = grads_at(params, batch, carry, rng)
        (loss, (aux, new_carry)), grads = out
        updates, opt_state = tx.update(grads, opt_state, params)
        new_params = jax.tree.map(jnp.add, params, updates)
        new_params = optim.constrain(model, new_params)  # cells' projections (IndRNN)
        param_norm = optax_norm(params)
        m = {k: v for k, v in aux.items() if k != "loss"}
        m.update(
            loss=loss,
            grad_norm=optax_norm(grads),  # before clipping
            param_norm=param_norm,
            update_ratio=optax_norm(updates) / jnp.maximum(param_norm, 1e-12),
            lr=jnp.asarray(schedule(step), jnp.float32),
        )
        return new_params, opt_state, (new_carry if stream else carry), m

    def eval_one(params, carry, batch):  # carry None: zeros (or the learned one)
        _, aux, new_carry = loss_fn(params, batch, carry if stream else None, None, True)
        return aux, (new_carry if stream else carry)

    seeds = num_seeds > 1
    if seeds:
        train_one = jax.vmap(train_one, in_axes=(0, 0, 0, None, None, 0, None))
        eval_one = jax.vmap(eval_one, in_axes=(0, 0, None))

    def init(key, batch):  # one seed; seeds are stacked by `jitted_steps`
        return {"step": jnp.zeros((), jnp.int32), **init_one(key, batch)}

    def train_step(state, batch, reset, keys):
        step = state["step"]
        carry = state.get("carry")
        params, opt_state, carry, m = train_one(
            state["params"],
            state["opt_state"],
            carry,
            batch,
            reset,
            keys if seeds else keys[0],
            step,
        )
        new = {"step": step + 1, "params": params, "opt_state": opt_state}
        if stream:
            new["carry"] = carry
        return new, m

    return init, train_step, eval_one


_JITTED: dict[tuple, tuple] = {}


def jitted_steps(model, optim_config, num_steps: int, stream: bool, num_seeds: int):
    """``make_steps`` jitted (train step with the state donated), cached per process.

    The cache key is the model's and optimizer's full description, so a second run of the same
    setup in one process (a sweep, a notebook, the tests) reuses the compiled steps.
    """
    classes = tuple(id(v) for v in vars(model).values() if isinstance(v, type))  # user cells
    key = (repr(model), classes, repr(sorted(optim_config.to_dict().items())), num_steps)
    key += (stream, num_seeds)
    if key not in _JITTED:
        if len(_JITTED) >= 8:  # a long sweep in one process: drop the oldest
            _JITTED.pop(next(iter(_JITTED)))
        tx, schedule = optim.make(optim_config, num_steps)
        init, step, evaluate = make_steps(model, tx, schedule, stream=stream, num_seeds=num_seeds)
        init_one = jax.jit(init)

        def init_seeds(keys, batch):  # S inits with one compile (and equal to S single runs)
            states = [init_one(keys[s], batch) for s in range(num_seeds)]
            if num_seeds == 1:
                return states[0]
            stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
            return {**stacked, "step": states[0]["step"]}

        _JITTED[key] = (init_seeds, jax.jit(step, donate_argnums=0), jax.jit(evaluate))
    return _JITTED[key]
