"""THE engine: every recurrent layer in rnnlab runs here.

Read it top-down:

* :mod:`.plan` -- ONE table (:data:`~.plan.RULES`, :data:`~.plan.THRESHOLDS`) and one function
  (:func:`~.plan.plan`): which loop, input feed, remat and read-ahead a layer gets on this
  device, and why not the faster loops;
* :mod:`.layer` -- :class:`RNN`: stacking, bidirectional, dropout, residual, initial carry;
* :mod:`.run` -- :func:`unroll`: one layer, one direction: plan, feed, loop;
* :mod:`.loops` -- one module per loop (autodiff, fused, native, associative) with one
  signature, their one shared helper (:mod:`.loops.common`), and the step loop
  (:func:`step_loop`) that sampling, decoding and the Lyapunov probe use;
* :mod:`.contract` -- what a cell declares to get each loop (no cell names in the engine);
* :mod:`.kernels` -- the native CPU kernels' bindings;
* :mod:`.explainer` -- :func:`explain`: the plans of a model, as readable lines.

No function here shares a name with a module (``rnnlab.engine.plan`` is the module; its
function is ``rnnlab.engine.plan.plan``).

``docs/engine.md`` is the guide: the layout, the table and how to read it, the cell contract.
"""

from rnnlab.engine.explainer import explain, plans
from rnnlab.engine.inputs import Embedded
from rnnlab.engine.layer import RNN, RNNOutput, make_cell
from rnnlab.engine.loops.step import step_loop
from rnnlab.engine.plan import Options, Plan
from rnnlab.engine.run import unroll

__all__ = [
    "RNN",
    "Embedded",
    "Options",
    "Plan",
    "RNNOutput",
    "explain",
    "make_cell",
    "plans",
    "step_loop",
    "unroll",
]
