"""Precision planning on a MiniLM-sized text encoder with activation outliers, against default dynamic int8.

    .venv/bin/python benchmarks/planner_outliers.py [--hidden 384 --layers 6 --scale 64 --train-steps 300] [--out FILE.json]

Builds a BERT (hidden 384, 6 layers, 12 heads, MLP 1536; initializer_range 0.1), trains it briefly on the
example JSONL texts (examples.train_text_encoder: each text against its pair and its label's prompt), adds
outliers to two layers (examples.add_attention_outliers: value channels x scale, the output projection
compensating; same function), saves it with save_pretrained, and runs mmcompress on it with those texts:
fp32, default dynamic int8, and `quantize: auto` under a 0.5-point / 0.99 min-cosine budget.
Prints and writes each artifact's accuracy, min cosine, speedups at batch 1 and 16, and the plan chosen.
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
    from transformers import BertConfig, BertModel

    from mmcompress import examples
    from mmcompress.machine import fingerprint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--scale", type=float, default=64.0)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmcompress-planner-bench-"))
    try:
        model_dir = work / "bert-outliers"
        tok = examples._bert_tokenizer(model_dir)
        torch.manual_seed(0)
        model = BertModel(BertConfig(vocab_size=len(tok), hidden_size=a.hidden, intermediate_size=4 * a.hidden,
                                     num_hidden_layers=a.layers, num_attention_heads=a.hidden // 32,
                                     max_position_embeddings=64, initializer_range=0.1))
        data = examples.texts_jsonl(work / "texts", n=400)
        loss = examples.train_text_encoder(model, tok, data, steps=a.train_steps)
        modules = examples.add_attention_outliers(model, channels=2, scale=a.scale, layers=[0, a.layers // 2])
        model.save_pretrained(model_dir)
        recipe = work / "recipe.yaml"
        recipe.write_text(f"""name: planner-outliers
teacher:
  hf: {model_dir}
data:
  source: jsonl
  path: {data}
  splits: {{calibration: 128, eval: 256}}
  prompts: {{templates: ["question about {{label}}"]}}
export:
  variants:
    - {{name: fp32, quantize: none}}
    - {{name: int8-dynamic, quantize: dynamic}}
    - {{name: planned, quantize: auto}}
checks:
  batch_sizes: [1, 16]
  rounds: 40
  budgets: {{min_cosine: 0.99}}
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
                          "min_cosine": e.get("fidelity", {}).get("text", {}).get("min"),
                          "speedup": {k: v.get("speedup") for k, v in e["latency"]["text"].items()},
                          "median_ms": {k: v["median_ms"] for k, v in e["latency"]["text"].items()},
                          "verdict": e["verdict"]}
        result = {"command": "benchmarks/planner_outliers.py " + " ".join(sys.argv[1:]), "machine": fingerprint(),
                  "model": {"hidden": a.hidden, "layers": a.layers, "outlier_scale": a.scale,
                            "train_steps": a.train_steps, "train_loss": loss, "outlier_modules": modules},
                  "exit_code": done.returncode, "artifacts": rows,
                  "plan": {k: {"reason": v["reason"], "chosen": v["chosen"],
                               "plans": [{kk: p[kk] for kk in ("method", "cosine", "speedup", "passed")} |
                                         {"float": [n["module"] for n in p["float_nodes"]]} for p in v["plans"]],
                               "sensitivity_seconds": v["sensitivity"]["seconds"]} for k, v in plan.items()},
                  "planner_seconds": next(s["seconds"] for s in report["stages"] if s["name"] == "variant planned")}
        print(json.dumps({k: result[k] for k in ("artifacts", "planner_seconds")}, indent=1))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
