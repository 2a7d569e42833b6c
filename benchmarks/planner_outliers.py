"""Precision planning on a MiniLM-sized text encoder with activation outliers, against default dynamic int8.

    .venv/bin/python benchmarks/planner_outliers.py [--hidden 384 --layers 6 --scale 64 --train-steps 300]
        [--runtime auto] [--out FILE.json]

Builds a BERT (hidden 384, 6 layers, 12 heads, MLP 1536; initializer_range 0.1), trains it briefly on the
example JSONL texts (examples.train_text_encoder: each text against its pair and its label's prompt), adds
outliers to two layers (examples.add_attention_outliers: value channels x scale, the output projection
compensating; same function), saves it with save_pretrained, and runs mmcompress on it with those texts:
fp32, default dynamic int8, and `quantize: auto` under a 0.5-point / 0.99 min-cosine budget (with
`--runtime auto`, `runtime: auto` too: the plan also searches OpenVINO, when installed, and bf16 where the CPU
has it).
Prints and writes each artifact's accuracy, min cosine, speedups at batch 1 and 16, and the plan chosen.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

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
    ap.add_argument("--runtime", default=None, help="the planned variant's runtime (auto: the plan chooses)")
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
    - {{name: planned, quantize: auto{f", runtime: {a.runtime}" if a.runtime else ""}}}
checks:
  batch_sizes: [1, 16]
  rounds: 40
  budgets: {{min_cosine: 0.99, max_accuracy_drop: 0.5}}
""")
        from _planned_run import run_planned

        got = run_planned(recipe, work / "run", "text")
        result = {"command": "benchmarks/planner_outliers.py " + " ".join(sys.argv[1:]), "machine": fingerprint(),
                  "model": {"hidden": a.hidden, "layers": a.layers, "outlier_scale": a.scale,
                            "train_steps": a.train_steps, "train_loss": loss, "outlier_modules": modules}, **got}
        print(json.dumps({k: result[k] for k in ("artifacts", "planner_seconds")}, indent=1))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
