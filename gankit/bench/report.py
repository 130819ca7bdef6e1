"""The benchmark's records as a summary, markdown tables, a chart and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gankit.fileio import atomic_path, atomic_write_json


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, computed from the records: speed-up of the best file backend over
    the best PyTorch variant per model and batch, roof share of the best backend, training
    ratio, cold start."""
    ok = [r for r in records if r.get("kind") == "inference" and r.get("median_ms") and r.get("status") == "ok"
          and r.get("device", "cpu") == "cpu"]
    out: dict[str, Any] = {"speedup": [], "roof": []}
    for model in sorted({r["model"] for r in ok}):
        for b in sorted({r["batch"] for r in ok if r["model"] == model}):
            rows = [r for r in ok if r["model"] == model and r["batch"] == b]
            files = [r for r in rows if r["file"]]
            torchs = [r for r in rows if not r["file"]]
            if files and torchs:
                bf, bt = min(files, key=lambda r: r["median_ms"]), min(torchs, key=lambda r: r["median_ms"])
                out["speedup"].append({"model": model, "batch": b, "best_file": bf["backend"], "best_pytorch": bt["backend"],
                                       "ratio": round(bt["median_ms"] / bf["median_ms"], 2)})
            best = min(rows, key=lambda r: r["median_ms"])
            out["roof"].append({"model": model, "batch": b, "backend": best["backend"], "precision": best["precision"],
                                "roof_share": best.get("roof_share")})
    out["training"] = [r for r in records if r.get("kind") == "training_ratio"]
    out["cold_start"] = [r for r in records if r.get("kind") == "cold_start" and "status" not in r]
    out["restore_throughput"] = [r for r in records if r.get("kind") == "restore_throughput" and "status" not in r]
    return out


def markdown(records: list[dict[str, Any]]) -> str:
    m = next((r for r in records if r.get("kind") == "machine"), {})
    roof = next((r for r in records if r.get("kind") == "roof"), {})
    lines = [f"Machine: {m.get('cpu')} ({m.get('threads')} threads; {', '.join(m.get('isa', []))}), torch {m.get('torch')}, "
             f"onnxruntime {m.get('onnxruntime')}, openvino {m.get('openvino')}" + (f", GPU {m['gpu']}" if m.get("gpu") else ""),
             "", f"Roofs (large matmul, this process): fp32 {roof.get('fp32_gflops')} GFLOP/s, bf16 {roof.get('bf16_gflops')}, "
             f"int8 {roof.get('int8_gflops')} GOP/s" + (" (smoke run: rough)" if roof.get("smoke") else ""), "",
             "| model | backend | batch | median ms | p90 ms | images/s | GFLOP/s | roof share | PSNR vs fp32 dB | quality | status |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in records:
        if r.get("kind") != "inference":
            continue
        if not r.get("median_ms"):
            lines.append(f"| {r['model']} | {r['backend']} | {r.get('batch') or '-'} | | | | | | | | {r['status']} |")
            continue
        q = ", ".join(f"{k} {v}" for k, v in (r.get("quality") or {}).items())
        share = f"{100 * r['roof_share']:.0f}%" if r.get("roof_share") is not None else "-"
        lines.append(f"| {r['model']} | {r['backend']} | {r['batch']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | "
                     f"{r['images_per_s']:.0f} | {r['gflops_per_s']:.1f} | {share} | {r['psnr_vs_fp32_db']} | {q} | {r['status']} |")
    s = summarize(records)
    lines += ["", "| model | batch | best file backend | best PyTorch variant | speed-up |", "|---|---:|---|---|---:|"]
    for x in s["speedup"]:
        lines.append(f"| {x['model']} | {x['batch']} | {x['best_file']} | {x['best_pytorch']} | {x['ratio']:.2f}x |")
    for t in s["training"]:
        lines.append("")
        lines.append(f"Training ({t['model']}, batch {t['batch']}): gankit {t['gankit_images_per_s']:.0f} images/s"
                     f"{' in bf16' if t.get('precision') == 'bf16' else ''}, "
                     f"plain PyTorch loop {t['plain_images_per_s']:.0f} images/s: {t['ratio']:.2f}x"
                     + (f"; with `--set precision=bf16` {t['gankit_bf16_images_per_s']:.0f} images/s: {t['bf16_ratio']:.2f}x"
                        if "bf16_ratio" in t else ""))
    for t in (r for r in records if r.get("kind") == "time_to_quality"):
        def fmt(side):
            return (f"{side['train_s'] / 60:.1f} min (step {side['step']}, FD {fd_times(side['fd_ratio'])} then)" if side.get("reached")
                    else f"not reached in {t['max_steps']} steps ({side['spent_s'] / 60:.1f} min; best accuracy "
                         f"{max(c['conditional_accuracy'] for c in side['curve']):.3f})")
        lines.append("")
        lines.append(f"Time to quality ({t['model']}, conditional accuracy >= judge's {t['target_accuracy']:.3f}, "
                     f"training time only): gankit {fmt(t['gankit'])}"
                     + (f" in {t['precision']}" if t.get("precision") else "") + f"; plain loop {fmt(t['plain'])}"
                     + (f": {t['speedup']:.2f}x" if t.get("speedup") else ""))
    for t in s["restore_throughput"]:
        lines.append("")
        mp = t["gankit_restore_mp_per_s"]
        lines.append(f"Restore throughput ({t['model']}, x{t['scale']} of a {t['input'][0]}x{t['input'][1]} photo, "
                     f"tiles of {t['tile']} with {t['tile_pad']} px context): `gankit restore` (default backend: "
                     f"{t.get('providers', ['?'])[0]}) {t['gankit_restore_s']} s, {mp} MP/s"
                     + (f"; PyTorch at its best in any precision ({t['torch_best_any']}) {t['torch_best_any_s']} s: "
                        f"{t['ratio_vs_torch']:.2f}x" if "torch_best_any" in t else "")
                     + (f"; with `--backend onnxruntime` (fp32) {t['onnxruntime_restore_s']} s, "
                        f"{t['onnxruntime_restore_mp_per_s']} MP/s"
                        + (f": {t['onnxruntime_ratio_vs_torch']:.2f}x PyTorch fp32 at its best ({t['torch_best']}, "
                           f"{t['torch_best_s']} s)" if "onnxruntime_ratio_vs_torch" in t else "")
                        if "onnxruntime_restore_s" in t else "")
                     + f"; OpenCV bicubic (the floor) {t['opencv_bicubic_mp_per_s']} MP/s; seams: max difference "
                     f"{t['seam_max_diff_at_borders']} at tile borders, {t['seam_max_diff_inside']} inside (uint8 levels)")
    for r in records:
        if r.get("kind") in ("cold_start", "restore_throughput") and "status" in r:
            lines += ["", f"{r['kind'].replace('_', ' ').capitalize()} ({r['model']}): {r['status']}"]
    if s["cold_start"]:
        lines += ["", "| cold start | import ms | load ms | first result ms | in process ms | whole process ms |",
                  "|---|---:|---:|---:|---:|---:|"]
        for c in s["cold_start"]:
            lines.append(f"| {c['model']} | {c['import_ms']} | {c['load_ms']} | {c['first_batch_ms']} | "
                         f"{c['in_process_ms']} | {c['process_ms']} |")
        lines.append("")
        lines.append("Cold start: a fresh interpreter, `import gankit.runtime`, load, first result (generate: a batch "
                     "of 16; inpaint: 16 single images; restore: one image of the file's nominal size); whole process "
                     "includes the interpreter's start.")
    return "\n".join(lines) + "\n"


def chart(records: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    ok = [r for r in records if r.get("kind") == "inference" and r.get("median_ms")]
    models = sorted({r["model"] for r in ok})
    if not models:
        return
    fig = Figure(figsize=(6 * len(models), 4.5), dpi=100)
    axes = fig.subplots(1, len(models), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in ok if r["model"] == model]
        backends = list(dict.fromkeys(r["backend"] for r in rows))
        batches = sorted({r["batch"] for r in rows})
        width = 0.8 / max(1, len(backends))
        for i, b in enumerate(backends):
            ys = [next((r["images_per_s"] for r in rows if r["backend"] == b and r["batch"] == bs), 0) for bs in batches]
            failing = any(r["status"] != "ok" for r in rows if r["backend"] == b)
            ax.bar([j + i * width for j in range(len(batches))], ys, width, label=b + (" (failing)" if failing else ""),
                   hatch="//" if failing else None)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
        ax.set_yscale("log")
        ax.set_ylabel("images/s (log)")
        ax.set_title(model)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp)


def write_json(records: list[dict[str, Any]], path: Path) -> None:
    atomic_write_json(path, records, indent=1, default=float)


def fd_times(ratio) -> str:
    """FD / floor as text: n/a where the record has none (a floor of ~0, gankit.evaluate)."""
    return "n/a" if ratio is None else f"{ratio:.1f}x"
