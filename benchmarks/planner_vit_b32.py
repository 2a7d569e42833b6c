"""Precision planning on a ViT-B/32-shaped image tower, side by side with ORT dynamic int8, in one run.

    .venv/bin/python benchmarks/planner_vit_b32.py [--min-cosine 0.999] [--out FILE.json]

Builds a CLIP whose image tower is ViT-B/32-shaped (224 px, patch 32, hidden 768, 12 layers, 12 heads, MLP
3072, projection 512; random weights, the tower benchmarks/vit_b32_tower.py times) beside a tiny text tower,
saves it with save_pretrained, writes shapes images with captions (examples.shapes_jsonl, 64 px images
resized to 224 by the image processor), and runs `mmcompress run` on the image tower: fp32, ORT dynamic int8
(the default variant for this CPU's kind) and `quantize: auto` under a min-cosine budget, all timed
interleaved at batch 16 by the run's checks. Prints and writes each artifact's min cosine, k-NN accuracy,
latency and speedups, and the plan chosen with every plan it tried.
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
    from transformers import CLIPConfig, CLIPModel

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
        model_dir = examples.tiny_clip(work / "clip-vit-b32")  # its tokenizer and text tower; the image tower:
        small = CLIPModel.from_pretrained(model_dir)
        torch.manual_seed(0)
        big = CLIPModel(CLIPConfig(text_config=small.config.text_config.to_dict(), projection_dim=512,
                                   vision_config=dict(image_size=224, patch_size=32, hidden_size=768,
                                                      intermediate_size=3072, num_hidden_layers=12,
                                                      num_attention_heads=12)))
        big.save_pretrained(model_dir)
        examples._image_processor(model_dir, 224, True, (0.48145466, 0.4578275, 0.40821073),
                                  (0.26862954, 0.26130258, 0.27577711))
        data = examples.shapes_jsonl(work / "shapes", n=160)
        recipe = work / "recipe.yaml"
        recipe.write_text(f"""name: planner-vit-b32
teacher:
  hf: {model_dir}
data:
  source: jsonl
  path: {data}
  splits: {{calibration: 32, eval: 128}}
  prompts: {{templates: ["a {{label}}"]}}
export:
  variants:
    - {{name: fp32, quantize: none, towers: [image]}}
    - {{name: int8-dynamic, quantize: dynamic, towers: [image]}}
    - {{name: planned, quantize: auto, max_seconds: {a.max_seconds}, towers: [image]}}
checks:
  batch_sizes: [16]
  rounds: {a.rounds}
  budgets: {{min_cosine: {a.min_cosine}}}
""")
        from _planned_run import run_planned

        got = run_planned(recipe, work / "run", "image")
        ms = lambda n: got["artifacts"][n]["median_ms"]["16"]
        result = {"command": "benchmarks/planner_vit_b32.py " + " ".join(sys.argv[1:]), "machine": fingerprint(),
                  "planned_vs_ort_dynamic_b16": ms("int8-dynamic") / ms("planned"),
                  "planned_vs_ort_fp32_b16": ms("fp32") / ms("planned"), **got}
        print(json.dumps({k: result[k] for k in ("artifacts", "planned_vs_ort_dynamic_b16", "planner_seconds")}, indent=1))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
