"""A runtime that crashes (SIGSEGV, abort, OOM kill) is a named failure of its variant: the run goes on, the
other variants are evaluated, timed and reported, and the exit code is 3 (runtimes/contain.py)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import invoke
from mmcompress.runtimes.contain import RuntimeCrash, contained, describe_exit


def _die_by(signum: int) -> None:  # a stand-in for a runtime that crashes: the process kills itself
    os.kill(os.getpid(), signum)


def _answer(x: int) -> int:
    return x * 2


def _raise() -> None:
    raise ValueError("bad graph")


def test_a_child_that_dies_by_signal_is_a_runtime_crash_naming_what_and_the_signal():
    with pytest.raises(RuntimeCrash) as e:
        contained(_die_by, signal.SIGSEGV, what="variant fp16 (opening image.onnx)", runtime="onnxruntime")
    assert "variant fp16 (opening image.onnx) (onnxruntime) crashed: killed by SIGSEGV (signal 11)" in str(e.value)
    assert e.value.exit_code == 3
    with pytest.raises(RuntimeCrash, match="SIGABRT"):
        contained(_die_by, signal.SIGABRT, what="x")
    assert "out-of-memory" in describe_exit(-signal.SIGKILL)


def test_a_childs_result_and_its_exceptions_come_back():
    assert contained(_answer, 21, what="x") == 42
    with pytest.raises(ValueError, match="bad graph"):
        contained(_raise, what="x")


# A text encoder whose fp16 graph makes ONNX Runtime 1.32 segfault while it creates the session (measured on the
# VNNI and AMX kinds: torch.nn.TransformerEncoderLayer with norm_first=True, at ORT's default optimisation level)
TEACHER = textwrap.dedent('''
    import torch
    from torch import nn
    from mmcompress.models.bundle import Bundle, ImagePreprocess, TextPreprocess, TowerSpec
    from mmcompress.models.shapes_clip import make_tokenizer

    class Text(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.emb = nn.Embedding(vocab, 32)
            self.layer = nn.TransformerEncoderLayer(32, 2, 64, batch_first=True, norm_first=True)
            self.proj = nn.Linear(32, 32)

        def forward(self, input_ids, attention_mask):
            h = self.layer(self.emb(input_ids))
            m = attention_mask.unsqueeze(-1).float()
            return self.proj((h * m).sum(1) / m.sum(1).clamp(min=1.0))

    class Image(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1))

        def forward(self, pixel_values):
            return self.conv(pixel_values).mean((2, 3))

    def build():
        torch.manual_seed(0)
        tok = make_tokenizer(max_length=8)
        return Bundle(towers={"image": Image(), "text": Text(len(tok))},
                      specs={"image": TowerSpec(inputs={"pixel_values": {0: "batch"}}),
                             "text": TowerSpec(inputs={"input_ids": {0: "batch", 1: "sequence"},
                                                       "attention_mask": {0: "batch", 1: "sequence"}})},
                      image_preprocess=ImagePreprocess(size=32, mean=(0.5,) * 3, std=(0.5,) * 3),
                      text_preprocess=TextPreprocess(tok, max_length=8))
''')

RECIPE = textwrap.dedent('''
    name: crash
    teacher: {python: crash_teacher:build}
    data: {source: shapes, splits: {calibration: 16, eval: 48}}
    export:
      variants:
        - {name: int8-dynamic, quantize: dynamic}
        - {name: fp16, quantize: fp16}
    checks: {batch_sizes: [1], rounds: 5, warmup: 1, budgets: {min_cosine: 0.5}}
''')


def _ort_crashes_on(graph) -> bool:
    code = f"import onnxruntime as o; o.InferenceSession({str(graph)!r}, providers=['CPUExecutionProvider'])"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode < 0


def test_a_variant_whose_runtime_segfaults_fails_by_name_and_the_others_are_reported(tmp_path):
    (tmp_path / "crash_teacher.py").write_text(TEACHER)
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    run_dir = tmp_path / "run"
    result = invoke("run", str(tmp_path / "recipe.yaml"), "--run-dir", str(run_dir))
    graph = run_dir / "variants" / "fp16" / "text.onnx"
    assert graph.is_file(), result.output
    if not _ort_crashes_on(graph):  # the crash is ONNX Runtime's; a build that fixed it opens the graph
        pytest.skip("this onnxruntime build opens the norm_first fp16 graph without crashing "
                    "(test_a_child_that_dies_by_signal_... covers the containment)")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    assert "variant fp16" in result.output and "SIGSEGV" in result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["passed"] is False and set(report["artifacts"]) == {"teacher", "int8-dynamic"}
    f = report["failed"]["fp16"]
    assert f["crashed"] and f["runtime"] == "onnxruntime" and "SIGSEGV" in f["how"] and f["stage"] == "evaluate fp16"
    assert report["artifacts"]["int8-dynamic"]["latency"]["image"]["1"]["median_ms"] > 0  # timed all the same
    assert any(line.startswith("fp16:") for line in report["failures"])
    assert "CRASHED" in result.output and "SIGSEGV" in (run_dir / "error.log").read_text()
    assert "fp16" in (run_dir / "report.html").read_text()
    # a rerun reuses what was computed and fails the same way, by name
    again = invoke("run", str(tmp_path / "recipe.yaml"), "--run-dir", str(run_dir))
    assert again.exit_code == 3 and "evaluate int8-dynamic" in again.output
