"""Strict JAX settings for the whole suite (Equinox style): implicit rank promotion is an error."""

import os

# Tests never touch the network and never pick up a GPU by accident.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
