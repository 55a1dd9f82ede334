"""The engine's loops, one module each, all with one signature:

    run(cell, params, carry, feed: common.Feed, plan: Plan) -> (final carry, ys [B, T, O],
                                                              states [T, B, ...] or None)

* :mod:`.autodiff` -- ``lax.scan`` over ``cell.step``, differentiated by autodiff: the
  reference every other loop is tested against;
* :mod:`.fused` -- the XLA scan with a custom VJP: weight gradients as one matmul over all
  ``T*B`` rows (cells with the fused-backward contract);
* :mod:`.native` -- the same custom VJP with the loop in C++ (cells that name an adapter);
* :mod:`.associative` -- ``lax.associative_scan`` (cells linear in their state);
* :mod:`.step` -- the step loop for time loops whose next input depends on the last output
  (sampling, decoding, the Lyapunov probe): not a layer loop, so it is not in :data:`LOOPS`.

:mod:`.common` is the one helper they share (feed, masking, reverse, initial carry, the
perturbation hook, the read-ahead scan). Which loop a layer runs is the plan's
(:mod:`rnnlab.engine.plan`).
"""

from rnnlab.engine.loops import associative, autodiff, fused, native

LOOPS = {
    "native": native.run,
    "associative": associative.run,
    "fused": fused.run,
    "autodiff": autodiff.run,
}
