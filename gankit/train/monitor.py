"""Collapse and divergence detection while training: say so early, and say what to try.

Two signals, both cheap and both already measured:

- the discriminator's adversarial loss, averaged over each log interval: near zero (below
  the loss's ``saturated_below``) means D separates real from fake perfectly and G gets no
  useful gradient;
- the judge metrics at each sample interval: class entropy falling (unconditional models
  producing a few classes only), conditional accuracy falling, or intra-class diversity
  (``diversity``: generated spread / real spread in judge features) far below 1.

Each warning prints one line on stderr and is recorded in ``metrics.jsonl`` as an event;
a warning is repeated only after its condition has cleared. The "low" checks (class entropy,
diversity) start after the first 30% of the run: early samples are all alike anyway.
"""

from __future__ import annotations

import sys
from typing import Any

def _remedy(options: list[tuple[str, bool]], last: str) -> str:
    """``try A, B, C or LAST`` from the options not already in use."""
    left = [text for text, in_use in options if not in_use] + [last]
    return "try " + (", ".join(left[:-1]) + " or " + left[-1] if len(left) > 1 else left[0])


def remedies(loss_name: str, config: dict[str, Any] | None = None) -> tuple[str, str]:
    """(remedy for a saturated D, remedy for mode collapse), leaving out what the run already does:
    a run on hinge is not told to try ``--loss hinge``."""
    cfg = config or {}
    diffaug = str(cfg.get("diffaug") or "none").lower() not in ("none", "", "false", "0")
    r1 = bool(cfg.get("r1"))
    saturated = _remedy([("--diffaug color,translation", diffaug), ("--r1 10", r1),
                         ("--spectral-norm", bool(cfg.get("spectral_norm")))], "a lower --lr")
    other = [n for n in ("hinge", "wgan-gp") if n != loss_name]
    modes = _remedy([("--mode-seeking 0.01", bool(cfg.get("mode_seeking"))), ("--loss " + " or ".join(other), False),
                     ("--diffaug", diffaug)], "a lower learning rate")
    return saturated, modes


class TrainingMonitor:
    CLASS_ENTROPY_MIN = 0.85
    DROP = 0.10
    DIVERSITY_MIN = 0.5
    PATIENCE = 2  # consecutive log intervals with a saturated D before warning

    SETTLE = 0.3  # fraction of the run before the "low" checks start

    def __init__(self, loss, run, family, stream=None, total_steps: int = 0, config: dict[str, Any] | None = None):
        self.loss, self.run, self.family = loss, run, family
        self.remedy_d, self.remedy_modes = remedies(getattr(loss, "name", ""), config)
        self.total_steps = int(total_steps)
        self.stream = stream if stream is not None else sys.stderr
        self.active: set[str] = set()
        self.best: dict[str, float] = {}
        self._saturated = 0
        self.warnings: list[dict[str, Any]] = []

    def _warn(self, key: str, step: int, message: str) -> None:
        if key in self.active:
            return
        self.active.add(key)
        event = {"step": step, "event": "warning", "kind": key, "message": message}
        self.warnings.append(event)
        self.run.append_metrics(event)
        print(f"warning: step {step}: {message}", file=self.stream)

    def _clear(self, key: str) -> None:
        self.active.discard(key)

    def check_losses(self, step: int, averages: dict[str, float]) -> None:
        limit = self.loss.saturated_below
        d = averages.get("d_loss")
        if limit is None or d is None:
            return
        self._saturated = self._saturated + 1 if d < limit else 0
        if self._saturated >= self.PATIENCE:
            self._warn("d-saturated", step, f"discriminator loss {d:.4f} is near zero (D wins, G gets no gradient); {self.remedy_d}")
        elif self._saturated == 0:
            self._clear("d-saturated")

    def check_eval(self, step: int, rec: dict[str, Any] | None) -> None:
        if not rec or rec.get("kind") != "generate":
            return
        conditional = "conditional_accuracy" in rec
        watched = ["conditional_accuracy"] if conditional else ["class_entropy"]
        for key in watched:
            value = float(rec[key])
            best = self.best.get(key, value)
            self.best[key] = max(best, value)
            if value < best - self.DROP:
                self._warn(f"{key}-drop", step, f"{key.replace('_', ' ')} fell from {best:.3f} to {value:.3f} "
                                                f"(mode collapse or divergence); {self.remedy_modes}")
            else:
                self._clear(f"{key}-drop")
        if step < self.SETTLE * self.total_steps:
            return
        if not conditional:
            cov = float(rec["class_entropy"])
            # against the real class frequencies: imbalanced data has a class entropy < 1 itself
            limit = self.CLASS_ENTROPY_MIN * float(rec.get("class_entropy_real", 1.0))
            if cov < limit:
                self._warn("class_entropy-low", step, f"class entropy {cov:.3f} < {limit:.3f} ({self.CLASS_ENTROPY_MIN} x "
                                                      f"the real data's): the generator makes only some classes (mode "
                                                      f"collapse); {self.remedy_modes}")
            else:
                self._clear("class_entropy-low")
        div = rec.get("diversity")
        if div is not None:
            if float(div) < self.DIVERSITY_MIN:
                self._warn("diversity-low", step, f"intra-class diversity {float(div):.2f} of the real data's "
                                                  f"(samples of a class look alike: partial mode collapse); {self.remedy_modes}")
            else:
                self._clear("diversity-low")
