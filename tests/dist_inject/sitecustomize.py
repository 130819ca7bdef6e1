"""Failure injection for tests/test_distributed.py, in the ranks it starts (test-only).

The test puts this directory first on PYTHONPATH, so Python imports this file at start-up in
every process, and sets ``GANKIT_TEST_INJECT=WHAT:RANK``; only a process with that ``RANK``
(torchrun's or the --nproc launcher's variable) is changed:

- ``save:R``: rank R's checkpoint write raises OSError (a full disk);
- ``step:R``: rank R raises RuntimeError in its second training step (mid-run, between collectives);
- ``nan:all``: every rank's losses are NaN from the first step (a diverged run).
"""

import os

_spec = os.environ.get("GANKIT_TEST_INJECT", "")
_what, _, _rank = _spec.partition(":")
if _what and "RANK" in os.environ and _rank in ("all", os.environ["RANK"]):
    if _what == "save":
        from gankit.train import checkpoint

        def _full_disk(*args, **kw):
            raise OSError(28, "No space left on device (injected)")

        checkpoint.save = _full_disk
    elif _what in ("step", "nan"):
        import math

        from gankit.train.trainer import Trainer

        _real_step = Trainer.train_step

        def _step(self):
            if _what == "step" and self.step >= 1:
                raise RuntimeError("injected failure in a training step")
            out = _real_step(self)
            if _what == "nan":
                out["d_loss"] = math.nan
            return out

        Trainer.train_step = _step
