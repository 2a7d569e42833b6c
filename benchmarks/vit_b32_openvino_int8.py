"""Which int8 graph runs fastest on OpenVINO for the ViT-B/32-shaped image tower: mmcompress's static Q/DQ, with
the attention MatMuls quantized too (and int8 activations), and the planner's `nncf` method.

    .venv/bin/python benchmarks/vit_b32_openvino_int8.py [--work DIR]

Builds the tower benchmarks/peers.py builds (peers.build_vit: random init, seed 0, procedural shape images) and
runs two recipes through the CLI in one run directory, as they were run for docs/performance.md:
  1. ort-dyn (dynamic int8 on ONNX Runtime), ov-static, ov-static-am (activation_matmuls: true) and
     ov-static-am-s8 (also activation_type: int8) on OpenVINO;
  2. ov-static again beside ov-nncf ({quantize: auto, runtime: openvino, methods: [nncf]}, all nodes int8).
Batch 1 and 16, 10 interleaved rounds, min cosine budget 0.999. Each run prints its table (machine, CPU kind).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

FIRST = """    - {name: ort-dyn, quantize: dynamic}
    - {name: ov-static, quantize: static, runtime: openvino}
    - {name: ov-static-am, quantize: static, activation_matmuls: true, runtime: openvino}
    - {name: ov-static-am-s8, quantize: static, activation_matmuls: true, activation_type: int8, runtime: openvino}
"""
SECOND = """    - {name: ov-static, quantize: static, runtime: openvino}
    - {name: ov-nncf, quantize: auto, runtime: openvino, methods: [nncf], top_blocks: 0, top_nodes: 0, max_float_nodes: 0}
"""


def recipe(model: dict, variants: str) -> str:
    return f"""name: vitexp
teacher:
  hf: {model['model_dir']}
  towers: [image]
data:
  source: jsonl
  path: {model['data']}
  splits: {{calibration: 64, eval: 96}}
export:
  variants:
{variants}checks:
  batch_sizes: [1, 16]
  rounds: 10
  warmup: 2
  threads: 2
  budgets: {{min_cosine: 0.999}}
"""


def main() -> None:
    from peers import build_vit

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args()
    work = a.work or Path(tempfile.mkdtemp(prefix="mmcompress-vit-ov-int8-"))
    work.mkdir(parents=True, exist_ok=True)
    model = build_vit(work, False)
    for i, variants in enumerate((FIRST, SECOND), 1):
        path = work / f"r{i}.yaml"
        path.write_text(recipe(model, variants))
        subprocess.run([sys.executable, "-m", "mmcompress", "run", str(path), "--run-dir", str(work / "run")])


if __name__ == "__main__":
    main()
