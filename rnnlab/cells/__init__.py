"""The cell library: a file in this folder is a registration.

Every module ``rnnlab/cells/NAME.py`` (not starting with ``_``) defines a class ``Cell``, a Flax
Linen module used *functionally* by the engine (:mod:`rnnlab.engine`). The contract:

Fields every cell accepts
    ``hidden_size: int``; ``dtype`` (computation dtype, ``None`` = promote inputs and params);
    ``param_dtype`` (default float32). Further fields are the cell's documented options.

Methods (shape legend: ``B`` batch, ``T`` time, ``D`` input, ``H`` hidden, ``G`` projected)
    ``project(x)``                 ``[..., D] -> [..., G]``: the input projection ``W_x x + b``.
                                   The engine calls it once on the whole ``[B, T, D]`` sequence
                                   (one matmul, "hoisting") before the scan.
    ``step(carry, xp_t)``          ``(carry, [B, G]) -> (carry, y_t [B, O])``: one time step, a
                                   pure function of (params, carry, projected input). Only the
                                   recurrent part (``W_h h``) lives here.
    ``initialize_carry(rng, input_shape)``  zeros carry for ``input_shape = (B, D)``; may be a
                                   pytree (LSTM: ``(c, h)``). Needs no params.
    ``__call__(carry, x_t)``       ``step(carry, project(x_t))``: a plain one-step cell, also
                                   what ``Cell(...).init(rng, carry, x_t)`` uses to make params.
    ``output_size`` (property)     ``O``, the width of ``y_t`` (``hidden_size`` for most cells).

Optional, mixed precision for the dense cells (elman, lstm, gru):
    ``matmul_dtype``               the operand dtype of the recurrent matmul ``h @ W_h`` (e.g.
                                   ``"bfloat16"``; ``None``: the computation dtype). The product
                                   accumulates, and the gates and carry stay, in the computation
                                   dtype: :func:`recurrent_matmul`. The fused backward
                                   (:mod:`rnnlab.engine.loops.fused`) reads the field too.

Optional, when ``y_t`` is not itself a leaf of the new carry (LRU: ``y = Re(C x) + D u``):
    ``output(carry, xp_t)``        ``y_t`` computed from the new carry. The engine's
                                   perturbation hook adds ``eps_t`` to the carry and reads
                                   ``y_t`` from the *perturbed* carry, so ``dL/d eps_t`` is the
                                   total derivative ``dL/dh_t`` (through ``y_t`` and ``h_{t+1}``);
                                   :func:`rnnlab.engine.loops.common.output_after_perturbation`
                                   implements that rule.

Optional, for cells whose recurrence is linear in the state (``h_t = a_t * h_{t-1} + b_t``):
    ``linear_coeffs(xp)``          ``[B, T, G] -> (a, b)`` each ``[B, T, H]``;
    ``readout(h, xp)``             ``([B, T, H], [B, T, G]) -> y [B, T, O]``;
so the engine may run them with ``jax.lax.associative_scan`` (``unroll(..., scan=...)``).
``a``, ``b`` and ``h`` may be complex (LRU); then the carry stays real and the cell also defines
``unpack_carry(carry) -> h`` and ``pack_carry(h) -> carry`` (LRU: ``[B, 2N] = [Re h, Im h]``);
without them the carry is ``h`` itself. ``step`` must equal ``h = a * h + b; y = readout(h)``.

Lookup is by file name (big_vision style): :func:`names`, :func:`get`. No decorators and no
import side effects. Cells defined outside the package come in three ways, all registered under
a name that must not shadow a built-in cell:

* an explicit :func:`register` call (a notebook, a script);
* cell files named on the command line (``rnnlab run ... --cells PATH.py``, repeatable) or in
  the environment variable ``RNNLAB_CELLS`` (paths separated by ``os.pathsep``): each is
  registered under its file stem (:func:`load_files`);
* installed packages' entry points in the group ``rnnlab.cells`` (``name = "pkg.module"`` for a
  module defining ``Cell``, or ``"pkg.module:Class"``), loaded when first looked up.

:func:`sources` lists the outside cells with their file and sha256, so a run can record them.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import pathlib
from types import ModuleType

import jax
import jax.numpy as jnp

_FOLDER = pathlib.Path(__file__).parent
_EXTRA: dict[str, type] = {}
_FILES: dict[str, pathlib.Path] = {}  # name -> the file an outside cell came from
ENV = "RNNLAB_CELLS"
ENTRY_POINTS = "rnnlab.cells"


def _builtin() -> set[str]:
    return {p.stem for p in _FOLDER.glob("*.py") if not p.stem.startswith("_")}


@functools.lru_cache(maxsize=1)  # scanning the installed distributions costs milliseconds
def _entry_points() -> dict:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def load_files(paths) -> list[str]:
    """Register each cell file in ``paths`` under its file stem; returns the names.

    A file already registered under its name is skipped; another file under a taken name, a
    path that is not a ``.py`` file, or a file without ``Cell`` is refused (``ValueError`` /
    ``FileNotFoundError`` naming the path).
    """
    out = []
    for item in paths:
        path = pathlib.Path(item).expanduser()
        if path.suffix != ".py" or not path.is_file():
            raise FileNotFoundError(
                f"cell file {str(item)!r}: expected an existing .py file defining class Cell"
            )
        name, resolved = path.stem, path.resolve()
        if _FILES.get(name) == resolved:
            out.append(name)
            continue
        if name in _EXTRA:
            raise ValueError(
                f"cell file {str(item)!r}: the name {name!r} is already registered"
                + (f" from {str(_FILES[name])!r}" if name in _FILES else "")
                + "; rename the file"
            )
        register(name, path)
        _FILES[name] = resolved
        out.append(name)
    return out


def _outside() -> None:
    """Register the files named in ``$RNNLAB_CELLS`` (idempotent)."""
    env = os.environ.get(ENV, "")
    if env:
        load_files([p for p in env.split(os.pathsep) if p])


def sources() -> dict[str, dict]:
    """``{name: {"path", "sha256"}}`` of the cells registered from files outside the package."""
    return {
        name: {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        for name, path in sorted(_FILES.items())
        if path.is_file()
    }


def names() -> list[str]:
    """All registered cell names, sorted: the files in this folder, :func:`register`-ed and
    ``--cells``/``$RNNLAB_CELLS`` files, and installed packages' ``rnnlab.cells`` entry points."""
    _outside()
    return sorted(_builtin() | set(_EXTRA) | set(_entry_points()))


def get(name: str) -> type:
    """The ``Cell`` class registered under ``name``.

    Raises:
      KeyError: unknown name; the message lists the known names and the closest match.
    """
    if not isinstance(name, str):
        raise TypeError(f"cell name must be a str, got {type(name).__name__}: {name!r}")
    if name in _EXTRA:
        return _EXTRA[name]
    _outside()
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _builtin() and name in (eps := _entry_points()):
        obj = eps[name].load()  # a module defining Cell, or the class itself
        _EXTRA[name] = getattr(obj, "Cell", obj)
        return _EXTRA[name]
    known = names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(
            f"unknown cell {name!r}.{hint} Known cells: {', '.join(known)}. A cell in a file "
            f"of its own: pass --cells PATH.py (or set ${ENV})."
        )
    module = importlib.import_module(f"{__name__}.{name}")
    return module.Cell


def module(name: str) -> ModuleType:
    """The module that defines cell ``name`` (its docstring holds the equations and the paper)."""
    cls = get(name)
    return importlib.import_module(cls.__module__)


def matmul_dtype(value) -> jnp.dtype | None:
    """A cell's ``matmul_dtype`` field checked: ``None`` or a floating dtype (name or type)."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"matmul_dtype must be None or a floating dtype such as 'bfloat16', got {value!r}"
        )
    return dtype


def recurrent_matmul(h: jax.Array, w: jax.Array, operand_dtype=None) -> jax.Array:
    """``h [..., K] @ w [K, N]`` with both operands cast to ``operand_dtype`` and the product
    accumulated in ``h``'s dtype (``preferred_element_type``): bfloat16 operands with float32
    accumulation when ``h`` is float32 and ``operand_dtype`` bfloat16. ``None``: plain ``h @ w``.
    """
    if operand_dtype is None:
        return h @ w
    operand_dtype = jnp.dtype(operand_dtype)
    if h.dtype == operand_dtype and w.dtype == operand_dtype:
        return h @ w
    cast = lambda a: a.astype(operand_dtype)
    return jnp.matmul(cast(h), cast(w), preferred_element_type=h.dtype)


def register(name: str, cell: type | str | pathlib.Path) -> type:
    """Register a cell defined outside this folder; returns its class.

    Args:
      name: the registry name (must not shadow a built-in cell).
      cell: the ``Cell`` class itself, or a path to a ``.py`` file that defines ``Cell``.
    """
    if name in _builtin():
        raise ValueError(f"cell name {name!r} is taken by a built-in cell; choose another name")
    if isinstance(cell, (str, pathlib.Path)):
        path = pathlib.Path(cell)
        if not path.is_file():
            raise FileNotFoundError(f"cell file {str(path)!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"rnnlab_user_cells.{name}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not hasattr(mod, "Cell"):
            raise ValueError(f"{str(path)!r} defines no class named 'Cell'")
        cell = mod.Cell
    _EXTRA[name] = cell
    return cell


def unregister(name: str) -> None:
    """Remove a cell added with :func:`register` (built-in cells cannot be removed)."""
    _EXTRA.pop(name, None)
    _FILES.pop(name, None)
