"""Clusters as pseudo-labels for the unconditional gan: deterministic, label-free, sampled from z alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gankit_gan.clusters import MIN_PER_CLUSTER, cluster_labels, cluster_sizes, usable_clusters


@pytest.fixture(scope="module")
def mnist():
    from gankit.plugins import load_dataset

    return load_dataset("mnist5k")


@pytest.fixture(scope="module")
def clustered():
    """The gan family, a config with 80 clusters on mnist5k, and its generator."""
    fam, cfg = _config({"clusters": 80})
    return fam, cfg, fam.build_generator(cfg)


def _train_error(capsys, tmp_path, plugin, setting):
    """Exit code and stderr lines of a one-step ``gankit train`` with ``--set SETTING``."""
    from gankit.cli import main

    code = main(["train", "--plugin", plugin, "--steps", "1", "--batch-size", "4", "--out", str(tmp_path / "r"),
                 "--no-export", "--no-evaluate", "--set", setting])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [ln for ln in err.splitlines() if ln.strip()]


def _config(overrides=None, data="mnist5k"):
    from gankit.plugins import load_dataset
    from gankit.plugins import get_family
    from gankit.train.config import build_config

    fam = get_family("gan")
    return fam, build_config(fam, load_dataset(data), data=data, seed=0, device="cpu", overrides=overrides or {})


def test_clusters_are_deterministic_complete_and_group_digits_without_labels(mnist):
    a = cluster_labels(mnist.x_train, 20, seed=0)
    assert np.array_equal(a, cluster_labels(mnist.x_train, 20, seed=0))
    assert a.shape == (len(mnist.x_train),) and set(np.unique(a)) == set(range(20))
    sizes = cluster_sizes(a, 20)
    assert abs(sum(sizes) - 1) < 1e-4 and min(sizes) > 0
    # the labels are never read, yet each cluster is mostly one digit: purity far above the
    # ~0.11 of a random split (k-means on MNIST pixels reaches ~0.6-0.7 at 20 clusters)
    purity = sum(np.bincount(mnist.y_train[a == c]).max() for c in range(20)) / len(a)
    assert purity > 0.5, purity


def test_clusters_are_kept_on_disk_and_a_bad_cache_file_is_computed_again(tmp_path, monkeypatch):
    """A second process reads the labels instead of running k-means; a cache file that is not
    the labels (damaged, or another shape) is ignored and replaced."""
    from gankit_gan import clusters

    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(clusters, "_CACHE", {})  # a fresh process
    x = np.random.default_rng(0).integers(0, 256, (200, 1, 8, 8), dtype=np.uint8)
    first = cluster_labels(x, 4, seed=0)
    (path,) = (tmp_path / "cache" / "clusters").glob("*.npy")
    assert np.array_equal(np.load(path), first)
    runs = []
    real = clusters._kmeans
    monkeypatch.setattr(clusters, "_kmeans", lambda *a: runs.append(1) or real(*a))
    monkeypatch.setattr(clusters, "_CACHE", {})
    assert np.array_equal(cluster_labels(x, 4, seed=0), first) and runs == []  # read, not computed
    for bad in (b"not numpy", None):
        if bad is None:
            np.save(path, np.zeros(3, np.int64))  # a valid file of the wrong shape
        else:
            path.write_bytes(bad)
        monkeypatch.setattr(clusters, "_CACHE", {})
        assert np.array_equal(cluster_labels(x, 4, seed=0), first)
    assert len(runs) == 2 and np.array_equal(np.load(path), first)
    cluster_labels(x, 4, seed=1)  # another seed: another file
    assert len(list((tmp_path / "cache" / "clusters").glob("*.npy"))) == 2


def test_cluster_count_shrinks_for_small_data():
    assert usable_clusters(80, 4000) == 80
    assert usable_clusters(80, 1000) == 1000 // MIN_PER_CLUSTER
    assert usable_clusters(80, 2 * MIN_PER_CLUSTER - 1) == 0  # fewer than two clusters: none


def test_default_gan_config_records_its_clusters():
    fam, cfg = _config()
    k = fam.defaults["clusters"]
    assert cfg["clusters"] == k and len(cfg["cluster_sizes"]) == k
    G, D = fam.build_generator(cfg), fam.build_discriminator(cfg)
    assert G.code_embed.num_embeddings == k and D.embed.num_embeddings == k
    _, off = _config({"clusters": 0})
    assert "cluster_sizes" not in off and fam.build_generator(off).code_embed is None


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 79), min_size=1, max_size=64))
def test_training_z_asks_for_the_real_batch_clusters(clustered, labels):
    import torch

    fam, cfg, G = clustered
    y = torch.tensor(labels)
    g_in = fam.generator_inputs(torch.zeros(len(labels), 1, 28, 28), y, cfg, torch.Generator().manual_seed(len(labels)))
    assert set(g_in) == {"z"} and torch.isfinite(g_in["z"]).all()
    assert torch.equal(G.cluster_of(g_in["z"]), y)


def test_plain_normal_z_picks_each_cluster_as_often_as_the_data_has_it(clustered):
    import torch

    _, cfg, G = clustered
    z = torch.randn(200_000, cfg["latent_dim"], generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(G.cluster_of(z), minlength=cfg["clusters"]).double() / len(z)
    assert torch.allclose(freq, torch.tensor(cfg["cluster_sizes"], dtype=torch.float64), atol=0.004)


def test_the_exported_cluster_lookup_gives_the_training_lookup_exactly(clustered):
    """The export's one-hot matmul (ops every ONNX consumer loads) is the embedding lookup, bit for bit."""
    import torch

    fam, cfg, G = clustered
    G = G.eval()
    exported = fam.export_module(G, cfg)
    assert exported is not G and exported.onehot_lookup and not G.onehot_lookup  # the trained model is untouched
    z = torch.randn(4096, cfg["latent_dim"], generator=torch.Generator().manual_seed(1))
    edges = G.cluster_edges
    special = torch.cat([edges, edges.nextafter(edges.new_tensor(-9.0)), edges.nextafter(edges.new_tensor(9.0)),
                         edges.new_tensor([float("nan"), float("inf"), -float("inf"), -40.0, 40.0])])
    z[: len(special), 0] = special  # on, just below and just above every edge, and beyond all of them
    with torch.no_grad():
        assert torch.equal(exported.cluster_embedding(z), G.cluster_embedding(z))
        assert torch.equal(exported(z[len(special):]), G(z[len(special):]))


@pytest.mark.parametrize("bad", [-1, "many", 2.5])
def test_bad_cluster_counts_are_refused_in_one_line(capsys, tmp_path, bad):
    code, lines = _train_error(capsys, tmp_path, "gan", f"clusters={bad}")
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ")
    assert "--set clusters: input should be" in lines[0]  # the typed config refuses it before any work
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_clusters_on_a_conditional_family_are_refused_in_one_line(capsys, tmp_path):
    code, lines = _train_error(capsys, tmp_path, "cgan", "clusters=10")
    assert code == 2 and len(lines) == 1 and "conditioned on its labels" in lines[0]


def test_run_with_clusters_saves_sizes_resumes_and_exports_z_only(tmp_path, monkeypatch):
    import onnx

    monkeypatch.chdir(tmp_path)  # the export goes to ./exported

    from gankit.pipeline import train

    common = dict(plugin="gan", batch_size=8, evaluate=False, quiet=True,
                  overrides={"sample_every": 2, "clusters": 12, "ngf": 8, "ndf": 8})
    train(out=tmp_path / "a", steps=4, export=False, **common)
    train(out=tmp_path / "b", steps=2, export=False, **common)
    summary = train(out=tmp_path / "b", steps=4, resume=True, export=True, **common)  # resume sees the same config
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg["clusters"] == 12 and len(cfg["cluster_sizes"]) == 12
    from safetensors.numpy import load_file

    last = lambda run: load_file(str(sorted((run / "checkpoints").glob("step-*.safetensors"))[-1]))  # noqa: E731
    wa, wb = last(tmp_path / "a"), last(tmp_path / "b")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa if k.startswith(("G/", "D/")))
    model = onnx.load(str(tmp_path / summary["exported"]))
    assert [i.name for i in model.graph.input] == ["z"]  # the exporter's parity check passed too


@pytest.mark.parametrize("n,k", [(300, 7), (1000, 40)])
def test_fast_kmeans_pp_seeding_draws_what_scipy_draws(n, k):
    """The seeding keeps running nearest distances instead of scipy's all-pairs recomputation; the
    centroids and labels must be scipy's own, bit for bit, or every gan run's clusters would move."""
    from scipy.cluster.vq import kmeans2

    from gankit_gan.clusters import _kmeans_pp

    data = np.random.default_rng(n).standard_normal((n, 12)).astype(np.float32)
    ref = kmeans2(data, k, minit="++", iter=5, seed=np.random.default_rng([3, 1]))
    ours = kmeans2(data, _kmeans_pp(data, k, np.random.default_rng([3, 1])), minit="matrix", iter=5)
    assert np.array_equal(ref[0], ours[0]) and np.array_equal(ref[1], ours[1])
