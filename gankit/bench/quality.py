"""Quality through a backend: reduced precision is reported only with proof that the model
still does its job (judge metrics for generators, hole PSNR for inpainting,
PSNR on the held-out degraded set for restoration)."""

from __future__ import annotations

import numpy as np

from gankit.bench.cpu import Backend
from gankit.bench.models import BenchModel
from gankit.evaluate.metrics import psnr


def quality(model: BenchModel, backend: Backend, samples: int = 512, batch: int = 64) -> dict[str, float]:
    """Judge metrics (generators), hole PSNR (inpainting) or held-out PSNR (restore) computed
    through ``backend``."""

    def call(inputs):
        run = backend.prepare(inputs)
        out = getattr(run, "fetch", run)()
        return np.asarray(out, dtype=np.float32)

    ds = model.dataset
    if model.family.task == "inpaint":
        from gankit.data import to_float
        from gankit.evaluate.inpainting import eval_masks

        n = min(samples, len(ds.x_test)) // batch * batch
        x = to_float(ds.x_test[:n])
        res = {}
        for kind in ("rect", "strokes"):
            m = eval_masks(kind, n, x.shape[2], x.shape[3], seed=0).astype(np.float32)
            out = np.concatenate([call({"image": x[i:i + batch] * (1 - m[i:i + batch]), "mask": m[i:i + batch]})
                                  for i in range(0, n, batch)])
            hole = np.broadcast_to(m, x.shape).astype(bool)
            res[f"hole_psnr_{kind}_db"] = round(min(psnr(out[hole], x[hole], data_range=2.0), 999.0), 3)
        return res
    if model.family.task == "restore":
        from gankit.evaluate.restoration import evaluate_restoration

        def restore(lq):
            return np.concatenate([call({"image": np.ascontiguousarray(lq[i:i + batch], np.float32)})
                                   for i in range(0, len(lq), batch)])

        rec = evaluate_restoration(restore, ds, degradation=str(model.config["degradation"]), limit=samples,
                                   baselines=False, realism=False)
        return {"psnr_db": rec["psnr_db"]}
    from gankit.evaluate import evaluate_generator

    conditional = model.family.condition == "label"

    def sample(z, labels):
        outs = []
        for i in range(0, len(z), batch):
            feed = {"z": z[i:i + batch]}
            if conditional:
                feed["label"] = labels[i:i + batch]
            outs.append(call(feed))
        return np.concatenate(outs)

    rec = evaluate_generator(sample, ds, latent_dim=int(model.config["latent_dim"]), conditional=conditional,
                             samples=samples // batch * batch, seed=0)
    keys = ("conditional_accuracy", "fd_ratio", "class_entropy") if conditional else ("class_entropy", "fd_ratio")
    return {k: rec[k] for k in keys}


def quality_failing(ref: dict[str, float], got: dict[str, float]) -> list[str]:
    """Metrics that dropped by more than one point: 0.01 of accuracy/class entropy, 1 dB of PSNR."""
    bad = []
    for k, v in ref.items():
        if k not in got:
            continue
        if k.endswith("_db") and got[k] < v - 1.0:
            bad.append(f"{k} {v:.2f} -> {got[k]:.2f}")
        elif k in ("conditional_accuracy", "class_entropy") and got[k] < v - 0.01:
            bad.append(f"{k} {v:.3f} -> {got[k]:.3f}")
    return bad
