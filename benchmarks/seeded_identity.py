"""Seeded training results as hashes: run it in two checkouts and diff the output.

Used to show that moving the gradient penalty and R1 onto the regulariser mechanism (and
adding the pre-training shape check) left seeded training bit-identical::

    (cd OLD && PYTHONPATH=$PWD:$PWD/plugins/gan:$PWD/plugins/cgan:$PWD/plugins/inpaint \\
        OMP_NUM_THREADS=1 python /path/to/benchmarks/seeded_identity.py) > before.json
    (cd NEW && PYTHONPATH=...same... python benchmarks/seeded_identity.py) > after.json
    diff before.json after.json && echo identical

Each case trains 3 steps through ``Trainer.fit`` (batch 8, seed 0, on CPU) and prints the
sha1 of G's, D's and the EMA generator's weights and buffers, with the last logged losses.
"""

import hashlib
import json
import tempfile

from gankit.plugins import load_dataset
from gankit.plugins import get_family
from gankit.train.config import build_config
from gankit.train.run import RunDir
from gankit.train.trainer import Trainer

CASES = [("cgan", {}), ("cgan", {"loss": "wgan-gp"}), ("cgan", {"r1": 10.0}),
         ("cgan", {"r1": 1.0, "loss": "hinge", "diffaug": "all"}), ("cgan", {"loss": "wgan-gp", "diffaug": "color"}),
         ("gan", {"r1": 1.0}), ("inpaint", {})]


def main() -> None:
    out = {}
    ds = load_dataset("mnist5k")
    for plugin, over in CASES:
        fam = get_family(plugin)
        cfg = build_config(fam, ds, data="mnist5k", seed=0, device="cpu",
                           overrides={"steps": 3, "batch_size": 8, "sample_every": 3, **over})
        with tempfile.TemporaryDirectory() as d:
            run = RunDir(d + "/run")
            run.create(cfg)
            t = Trainer(fam, ds, cfg, run)
            result = t.fit()
            h = hashlib.sha1()
            for mod in (t.G, t.D, t.G_ema):
                for k, v in ({} if mod is None else mod.state_dict()).items():
                    h.update(k.encode())
                    h.update(v.detach().cpu().contiguous().numpy().tobytes())
            out[f"{plugin} {json.dumps(over, sort_keys=True)}"] = {"sha1": h.hexdigest(), "last": result.last}
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
