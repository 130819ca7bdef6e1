"""Time to the judge's accuracy for gankit's default cgan recipe in bf16 and in fp32 (no plain loop):

    python benchmarks/ttq_precision.py

Evaluated every 50 steps on 1,000 samples, at most 700 steps each, as time_to_quality.py does."""
import tempfile, json
from pathlib import Path
from gankit.bench.training import _gankit_stepper, _accuracy_run
from gankit.plugins import get_family, load_dataset
from gankit.evaluate import evaluate_generator, reference, torch_sample_fn
from gankit.train.config import build_config
fam = get_family("cgan"); ds = load_dataset("mnist5k")
target = reference(ds).test_accuracy
out = {}
for prec in ("bf16", "fp32"):
    cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu", overrides={"precision": prec})
    judged = lambda G: evaluate_generator(torch_sample_fn(G), ds, latent_dim=int(cfg["latent_dim"]), conditional=True, samples=1000, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        st = _gankit_stepper(fam, ds, cfg, Path(tmp))
        tr = st.trainer
        def gen():
            tr.refresh_ema_statistics(); return tr.sample_generator
        out[prec] = _accuracy_run(prec, st, gen, judged, target, 700, 50, print)
print(json.dumps({k: {kk: v[kk] for kk in ("reached", "step", "train_s", "fd_ratio") if kk in v} for k, v in out.items()}))
