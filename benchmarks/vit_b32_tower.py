"""A ViT-B/32-shaped image tower (random init, 224 px, 12 layers, hidden 768) as PyTorch fp32, ORT fp32,
ORT dynamic int8 and mmcompress's default static int8 for this CPU's kind (export.target: auto), timed
interleaved in one process. --sweep adds the int8 settings the target does not choose (8-bit vs 7-bit weights,
U8U8), so docs/quantization.md can show fidelity and speed side by side per CPU kind.

    make bench        # or: .venv/bin/python benchmarks/vit_b32_tower.py --sweep --out benchmarks/results/NAME.json

Uses the project's own export, quantization, runtime and latency code, so the figures are what a recipe gets.
Writes JSON with the machine fingerprint (CPU, int8 instruction sets, threads, versions).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def build_tower(seed: int):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(image_size=224, patch_size=32, hidden_size=768, intermediate_size=3072,
                           num_hidden_layers=12, num_attention_heads=12, projection_dim=512)
    model = CLIPVisionModelWithProjection(cfg).eval()

    class Tower(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, pixel_values):
            return self.m(pixel_values=pixel_values).image_embeds

    return Tower(model), sum(p.numel() for p in model.parameters())


def images(n: int, seed: int) -> np.ndarray:
    """Procedural shapes upscaled to 224 px and CLIP-normalised: real image statistics, not N(0, 1)."""
    from mmcompress.data import shapes
    from mmcompress.models.bundle import ImagePreprocess
    from mmcompress.models.shapes_clip import CLIP_MEAN, CLIP_STD

    return ImagePreprocess(224, CLIP_MEAN, CLIP_STD)(shapes.generate(n, seed=seed).images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="default: the usable cores")
    ap.add_argument("--target", default="auto", help="export.target: auto, avx2, avx512, vnni, amx, arm64")
    ap.add_argument("--sweep", action="store_true", help="also the int8 settings the target does not choose")
    ap.add_argument("--rounds", type=int, default=20, help="interleaved rounds per batch size")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--calibration", type=int, default=64)
    ap.add_argument("--eval", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/vit_b32_tower.json"))
    args = ap.parse_args()

    from mmcompress.checks.latency import measure, set_threads, summarize
    from mmcompress.checks.fidelity import cosine_rows
    from mmcompress.export.onnx import export_tower
    from mmcompress.export.quantize_onnx import quantize_dynamic, quantize_static
    from mmcompress.export.int8_targets import settings
    from mmcompress.machine import fingerprint, usable_cores
    from mmcompress.models.bundle import TowerSpec
    from mmcompress.recipe import DynamicVariant, StaticVariant
    from mmcompress.runtimes.base import run_batched
    from mmcompress.runtimes.onnxruntime import OrtSession
    from mmcompress.runtimes.torch import TorchSession

    args.threads = args.threads or usable_cores()
    set_threads(args.threads)
    tower, params = build_tower(0)
    calib, ev = images(args.calibration, 1), images(args.eval, 2)
    spec = TowerSpec(inputs={"pixel_values": {0: "batch"}})
    steps: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        export_tower(tower, spec, {"pixel_values": ev}, tmp / "fp32.onnx", opset=18, exporter="dynamo")
        steps["export_s"] = time.perf_counter() - t0
        dyn, static = DynamicVariant(name="d", quantize="dynamic"), StaticVariant(name="s", quantize="static")
        chosen = settings(dyn, args.target)
        other = {**chosen, "reduce_range": not chosen["reduce_range"]}
        tag = lambda st: "7bit" if st["reduce_range"] else "8bit"
        builds = {"dynamic": (quantize_dynamic, dyn, chosen), "static": (quantize_static, static, chosen)}
        if args.sweep:
            builds[f"dynamic-{tag(other)}"] = (quantize_dynamic, dyn, other)
            builds[f"static-{tag(other)}"] = (quantize_static, static, other)
            builds["dynamic-u8u8"] = (quantize_dynamic, dyn.model_copy(update={"weight_type": "uint8"}),
                                      {**chosen, "reduce_range": False})
        made = {}
        for name, (convert, cfg, int8) in builds.items():
            t0 = time.perf_counter()
            made[name] = convert(tmp / "fp32.onnx", tmp / f"{name}.onnx", cfg, int8, {"pixel_values": calib}, None)
            steps[f"{name}_s"] = time.perf_counter() - t0
        names = ["fp32", *builds]
        sessions = {"pytorch-fp32": TorchSession(tower, ["pixel_values"]),
                    **{f"ort-{n}": OrtSession(tmp / f"{n}.onnx", args.threads) for n in names}}
        ref = sessions["pytorch-fp32"].run({"pixel_values": ev})
        results = {"fidelity": {}, "latency": {}, "quantizer": made,
                   "size_mb": {n: (tmp / f"{n}.onnx").stat().st_size / 1e6 for n in names}}
        for name, s in sessions.items():
            cos = cosine_rows(run_batched(s, {"pixel_values": ev}, batch=16), ref)
            results["fidelity"][name] = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
        for b in args.batch_sizes:
            feeds = {"pixel_values": np.ascontiguousarray(ev[:b])}
            times = measure(sessions, feeds, rounds=args.rounds, warmup=3)
            results["latency"][str(b)] = summarize(times, "pytorch-fp32")
            print(f"batch {b}: " + ", ".join(f"{n} {r['median_ms']:.1f} ms" for n, r in results["latency"][str(b)].items()))
    out = {"benchmark": "vit_b32_tower", "params": params, "machine": {**fingerprint(), "threads": args.threads},
           "settings": {"rounds": args.rounds, "calibration_images": args.calibration, "eval_images": args.eval,
                        "target": args.target, "int8": chosen,
                        "static": static.model_dump(exclude={"name", "budgets", "towers"}),
                        "dynamic": dyn.model_dump(exclude={"name", "budgets", "towers"})},
           "steps": steps, **results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
