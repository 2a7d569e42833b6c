"""Precision planning on a ViT-B/32-shaped image tower, side by side with ORT dynamic int8, in one run.

    .venv/bin/python benchmarks/planner_vit_b32.py [--min-cosine 0.999] [--out FILE.json]

Builds a ViT-B/32-shaped ViTModel (224 px, patch 32, hidden 768, 12 layers, 12 heads, MLP 3072; random
weights), saves it with save_pretrained, writes a shapes image folder (examples.imagefolder, 64 px images
resized to 224 by the tower's image processor), and runs `mmcompress run` on it: fp32, ORT dynamic int8
(the default variant for this CPU's kind) and `quantize: auto` under a min-cosine budget, all timed
interleaved at batch 16 by the run's checks. Prints and writes each artifact's min cosine, k-NN accuracy,
latency and speedups, and the plan chosen with every plan it tried.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    import torch
    from transformers import ViTConfig, ViTModel

    from mmcompress import examples
    from mmcompress.machine import fingerprint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-cosine", type=float, default=0.999)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--max-seconds", type=float, default=1200, help="the planner's time budget for the tower")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmcompress-planner-vit-"))
    try:
        model_dir = work / "vit-b32"
        torch.manual_seed(0)
        ViTModel(ViTConfig(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                           num_hidden_layers=12, num_attention_heads=12)).save_pretrained(model_dir)
        examples._image_processor(model_dir, 224, False, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        folder = examples.imagefolder(work / "shapes", per_class=32)
        recipe = work / "recipe.yaml"
        recipe.write_text(f"""name: planner-vit-b32
teacher:
  hf: {model_dir}
  pooling: cls
data:
  source: imagefolder
  path: {folder}
  splits: {{calibration: 32, eval: 64}}
export:
  variants:
    - {{name: fp32, quantize: none}}
    - {{name: int8-dynamic, quantize: dynamic}}
    - {{name: planned, quantize: auto, max_seconds: {a.max_seconds}}}
checks:
  batch_sizes: [16]
  rounds: {a.rounds}
  knn_k: 3
  budgets: {{min_cosine: {a.min_cosine}}}
""")
        run_dir = work / "run"
        done = subprocess.run([str(ROOT / ".venv" / "bin" / "mmcompress"), "run", str(recipe), "--run-dir", str(run_dir)],
                              stdout=subprocess.PIPE, text=True)
        print(done.stdout)
        report = json.loads((run_dir / "report.json").read_text())
        plan = json.loads((run_dir / "variants" / "planned" / "plan.json").read_text())
        rows = {}
        for name, e in report["artifacts"].items():
            primary = e["accuracy"].get("primary") or {}
            rows[name] = {"accuracy": {primary.get("metric"): primary.get("value")}, "delta_pts": e["accuracy"].get("delta"),
                          "min_cosine": e.get("fidelity", {}).get("image", {}).get("min"),
                          "median_ms": {k: v["median_ms"] for k, v in e["latency"]["image"].items()},
                          "speedup_vs_teacher": {k: v.get("speedup") for k, v in e["latency"]["image"].items()},
                          "verdict": e["verdict"]}
        ms = lambda n: rows[n]["median_ms"]["16"]
        result = {"command": "benchmarks/planner_vit_b32.py " + " ".join(sys.argv[1:]), "machine": fingerprint(),
                  "exit_code": done.returncode, "artifacts": rows,
                  "planned_vs_ort_dynamic_b16": ms("int8-dynamic") / ms("planned"),
                  "planned_vs_ort_fp32_b16": ms("fp32") / ms("planned"),
                  "plan": {k: {"reason": v["reason"], "chosen": v["chosen"], "timing": v["timing"],
                               "plans": [{kk: p[kk] for kk in ("method", "cosine", "ms", "speedup", "speedup_ci95", "passed")}
                                         | {"float": [n["module"] for n in p["float_nodes"]]} for p in v["plans"]],
                               "most_sensitive": v["sensitivity"]["nodes"][:8],
                               "sensitivity_seconds": v["sensitivity"]["seconds"]} for k, v in plan.items()},
                  "planner_seconds": next(s["seconds"] for s in report["stages"] if s["name"] == "variant planned")}
        print(json.dumps({k: result[k] for k in ("artifacts", "planned_vs_ort_dynamic_b16", "planner_seconds")}, indent=1))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
