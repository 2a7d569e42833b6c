"""Zero-shot accuracy of the demo teacher against its number of training steps (each a full seeded run with
that schedule), on the demo recipe's eval split. Writes JSON; the table in docs/teacher.md comes from it.

    .venv/bin/python benchmarks/teacher_curve.py --steps 100 200 400 600
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 200, 400, 600])
    ap.add_argument("--threads", type=int, default=None, help="default: the usable cores")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/teacher_curve.json"))
    args = ap.parse_args()

    from mmcompress.checks.accuracy import zero_shot, zero_shot_scores
    from mmcompress.data import load_data
    from mmcompress.machine import fingerprint
    from mmcompress.models import clip
    from mmcompress.models.bundle import ImagePreprocess, TextPreprocess
    from mmcompress.models.shapes_clip import CLIP_MEAN, CLIP_STD, train
    from mmcompress.models.zoo import REGISTRY
    from mmcompress.recipe import load
    from mmcompress.runtimes.base import run_batched
    from mmcompress.runtimes.torch import TorchSession

    from mmcompress.machine import usable_cores

    args.threads = args.threads or usable_cores()
    torch.set_num_threads(args.threads)
    recipe = load(Path(__file__).resolve().parent.parent / "recipes" / "clip-shapes.yaml")
    data = load_data(recipe.data, recipe.seed)
    ev = data.split("eval")
    rows = []
    for steps in args.steps:
        cfg = dataclasses.replace(REGISTRY["shapes-clip"].config, steps=steps)
        t0 = time.perf_counter()
        model, tok, _ = train(cfg)
        seconds = time.perf_counter() - t0
        towers, specs = clip.split_towers(model)
        img = run_batched(TorchSession(towers["image"], ["pixel_values"]),
                          {"pixel_values": ImagePreprocess(cfg.image_size, CLIP_MEAN, CLIP_STD)(ev.images)})
        prompts = [p for ps in data.class_prompts for p in ps]
        txt = run_batched(TorchSession(towers["text"], ["input_ids", "attention_mask"]),
                          TextPreprocess(tok, cfg.max_length)(prompts))
        scores = zero_shot_scores(img, txt.reshape(len(data.class_prompts), -1, txt.shape[-1]), "max")
        top1 = zero_shot(scores, ev.labels)["top1"]
        rows.append({"steps": steps, "train_seconds": round(seconds, 1), "zero_shot_top1": top1})
        print(f"{steps} steps: {seconds:.0f} s, zero-shot top-1 {top1:.1f}%", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "teacher_curve", "machine": {**fingerprint(), "threads": args.threads},
                                    "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
