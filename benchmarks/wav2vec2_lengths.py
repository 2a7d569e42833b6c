"""A wav2vec2-base-shaped audio encoder (raw samples of any length) through mmcompress, timed at clip lengths.

    .venv/bin/python benchmarks/wav2vec2_lengths.py [--layers 12 --hidden 768 --seconds 4] [--out FILE.json]

Builds a Wav2Vec2Model of wav2vec2-base's shape (7 conv layers of 512 channels striding 320 samples, 12
transformer layers of hidden 768, group norm: its extractor returns no attention mask), randomly initialised with
seed 0 and saved with save_pretrained, plus the example sounds JSONL (examples_audio.sounds_jsonl: 0.25-1.6 s
clips, some at 22.05 kHz); then runs recipes/hf-wav2vec2.yaml on them at batch 1 and 16 with int8 dynamic and
static. Latency is timed at the eval clips' median and p90 durations and at --seconds. Random weights: the
figures are speed and fidelity to this teacher, not accuracy of a trained model.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from mmcompress import examples_audio
    from mmcompress.machine import fingerprint

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--seconds", type=float, default=4.0, help="a clip length to time besides the eval ones")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mmcompress-wav2vec2-bench-"))
    try:
        torch.manual_seed(0)
        model_dir = work / "wav2vec2"
        Wav2Vec2Model(Wav2Vec2Config(hidden_size=a.hidden, num_hidden_layers=a.layers,
                                     num_attention_heads=a.hidden // 64, intermediate_size=4 * a.hidden)).save_pretrained(model_dir)
        Wav2Vec2FeatureExtractor(return_attention_mask=False).save_pretrained(model_dir)
        jsonl = examples_audio.sounds_jsonl(work / "sounds", n=48)
        run_dir = work / "run"
        sets = [f"teacher.hf={model_dir}", f"data.path={jsonl}", "checks.batch_sizes=[1, 16]",
                f"checks.audio_seconds=[{a.seconds:g}]", f"checks.rounds={a.rounds}", "checks.warmup=2",
                "export.variants=[{name: int8-dynamic, quantize: dynamic}, {name: int8-static, quantize: static}]"]
        cmd = [sys.executable, "-m", "mmcompress", "run", str(ROOT / "recipes" / "hf-wav2vec2.yaml"),
               "--run-dir", str(run_dir)] + [x for s in sets for x in ("--set", s)]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        print(done.stdout)
        report = json.loads((run_dir / "report.json").read_text())
        parity = json.loads((run_dir / "export-onnx" / "manifest.json").read_text())["files"]["audio.onnx"]["parity"]
        rows = {name: {"min_cosine": e.get("fidelity", {}).get("audio", {}).get("min"),
                       "median_ms": {k: v["median_ms"] for k, v in e["latency"]["audio"].items()},
                       "speedup_vs_teacher": {k: v.get("speedup") for k, v in e["latency"]["audio"].items()},
                       "speedup_ci95": {k: v.get("speedup_ci95") for k, v in e["latency"]["audio"].items()},
                       "verdict": e["verdict"]} for name, e in report["artifacts"].items()}
        result = {"command": "benchmarks/wav2vec2_lengths.py " + " ".join(sys.argv[1:]), "machine": fingerprint(),
                  "model": {"layers": a.layers, "hidden": a.hidden, "init": "random, seed 0"},
                  "exit_code": done.returncode, "clips": report["data"]["audio"],
                  "timed_at": report["checks"]["audio_seconds"],
                  "parity": {k: parity[k] for k in ("max_abs_diff", "lengths", "each_at_own_length")},
                  "artifacts": rows, "seconds": report["seconds"]}
        text = json.dumps(result, indent=1)
        print(text)
        if a.out:
            a.out.write_text(text + "\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
