"""runtime: openvino (runtimes/openvino.py): the graphs on OpenVINO's CPU plugin at the precision the variant
names, checked like every artifact; bf16 only where the CPU has AVX-512 BF16 or AMX; exit 4 without OpenVINO."""
from __future__ import annotations

import json
import shutil
import sys

import pytest

from conftest import TINY, invoke

pytest.importorskip("openvino", reason="openvino is in the test extra; install it: pip install 'mmcompress[openvino]'")
from mmcompress.runtimes import openvino as ov_runtime  # noqa: E402


def _recipe(tmp_path, variants: str):
    head, _, _ = TINY.read_text().partition("export:")
    path = tmp_path / "r.yaml"
    path.write_text(head + "export:\n  variants:\n" + variants +
                    "checks: {batch_sizes: [1, 4], rounds: 5, warmup: 1, budgets: {min_cosine: 0.99}}\n")
    return path


def test_openvino_runs_fp32_int8_and_bf16_where_the_cpu_has_it(tiny_copy, tmp_path):
    bf16 = ov_runtime.bf16_here()
    variants = ("    - {name: ov-fp32, quantize: none, runtime: openvino}\n"
                "    - {name: ov-dynamic, quantize: dynamic, runtime: openvino}\n"
                "    - {name: ov-static, quantize: static, runtime: openvino}\n"
                "    - {name: ort-static, quantize: static}\n"
                + ("    - {name: ov-bf16, quantize: bf16, runtime: openvino}\n" if bf16 else ""))
    # in a copy of the tiny run: its teacher outputs and ONNX export are reused (the recipe differs in variants)
    result = invoke("run", str(_recipe(tmp_path, variants)), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    arts = json.loads((tiny_copy / "report.json").read_text())["artifacts"]
    for name in ("ov-fp32", "ov-dynamic", "ov-static") + (("ov-bf16",) if bf16 else ()):
        row = arts[name]
        assert row["runtime"]["runtime"] == "openvino" and row["runtime"]["openvino"]
        assert min(row["fidelity"][t]["min"] for t in ("image", "text")) > 0.99
        assert row["latency"]["image"]["4"]["median_ms"] > 0
    # fp32 really runs in f32 (OpenVINO would pick bf16 on AMX by itself); bf16 says so
    assert {t["inference_precision"] for t in arts["ov-fp32"]["runtime"]["towers"].values()} == {"f32"}
    if bf16:
        assert {t["inference_precision"] for t in arts["ov-bf16"]["runtime"]["towers"].values()} == {"bf16"}
        assert arts["ov-bf16"]["towers"]["image"]["path"] == "export-onnx/image.onnx"  # the fp32 graph, at bf16
    # the same static graph on two runtimes: one file, timed once per runtime
    assert arts["ov-static"]["towers"]["image"]["sha256"] == arts["ort-static"]["towers"]["image"]["sha256"]
    if bf16:  # one graph at f32 and at bf16: two sessions in the rounds, two rows
        assert arts["ov-bf16"]["latency"]["image"]["4"] != arts["ov-fp32"]["latency"]["image"]["4"]
        assert "ov-fp32" in arts["ov-bf16"]["latency"]["image"]["4"]["vs"]
    assert "[openvino]" in result.output


def test_bf16_is_refused_on_a_cpu_without_bf16_naming_why(tmp_path, monkeypatch):
    monkeypatch.setattr(ov_runtime, "bf16_here", lambda: False)  # this CPU as one without AVX-512 BF16 / AMX
    result = invoke("validate", str(_recipe(tmp_path, "    - {name: b, quantize: bf16, runtime: openvino}\n")))
    assert result.exit_code == 2 and "AVX-512 BF16 or AMX" in result.output and "export.variants[0]" in result.output


def test_a_missing_openvino_is_exit_4_naming_the_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError, as where it is absent
    result = invoke("validate", str(_recipe(tmp_path, "    - {name: o, quantize: none, runtime: openvino}\n")))
    assert result.exit_code == 4 and "mmcompress[openvino]" in result.output and "runtime" in result.output


def test_runtime_auto_plans_on_every_runtime_here_and_the_artifact_runs_on_the_one_chosen(tiny_run, tmp_path):
    """quantize: auto + runtime: auto: candidates judged and timed on ONNX Runtime and OpenVINO (bf16 where the
    CPU has it; NNCF's quantizer among the methods), the variant run and reported on the runtime its plan chose;
    the plan reused with `plan:` keeps that runtime."""
    pytest.importorskip("nncf", reason="nncf is in the openvino extra and the test extra")
    fast = "calibration: [minmax], top_blocks: 0, top_nodes: 2, max_float_nodes: 2, max_seconds: 20"
    path = _recipe(tmp_path, f"    - {{name: planned, quantize: auto, runtime: auto, methods: [dynamic, nncf], {fast}}}\n")
    shutil.copytree(tiny_run[1], tmp_path / "run")  # the tiny run's teacher outputs and export are reused
    result = invoke("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    row = report["artifacts"]["planned"]
    plan = json.loads((tmp_path / "run" / "variants" / "planned" / "plan.json").read_text())
    chosen = {p["runtime"] for p in plan.values()}
    assert len(chosen) == 1 and row["runtime"]["runtime"] in chosen and row["variant"]["runtime"] in chosen
    for tower, p in plan.items():
        tried = {(c["runtime"], c["method"]) for c in p["plans"]}
        assert {("onnxruntime", "dynamic"), ("onnxruntime", "nncf"), ("openvino", "dynamic"), ("openvino", "fp32")} <= tried
        assert (("openvino", "bf16") in tried) == ov_runtime.bf16_here()
        assert set(p["runtimes"]) == {"onnxruntime", "openvino"} and p["runtime"] in p["reason"]
        assert all(c["speedup"] for c in p["plans"] if c["runtime"] == "openvino" and "error" not in c)
        assert row["fidelity"][tower]["min"] >= 0.99  # the budget the plan was judged on holds on the eval rows
    if row["runtime"]["runtime"] == "openvino":  # what OpenVINO was asked for is what the plan chose
        asked = {t: ("bf16" if plan[t]["chosen"]["precision"] == "bf16" else "f32") for t in plan}
        assert {t: v["inference_precision"] for t, v in row["runtime"]["towers"].items()} == asked
    # reused: no search, the same runtime and graphs (in a copy of the run: teacher outputs and export reused)
    shutil.copytree(tmp_path / "run", tmp_path / "run2")
    reuse = _recipe(tmp_path, f"    - {{name: planned, quantize: auto, runtime: auto, plan: run/variants/planned/plan.json}}\n")
    again = invoke("run", str(reuse), "--run-dir", str(tmp_path / "run2"))
    assert again.exit_code == 0, again.output
    row2 = json.loads((tmp_path / "run2" / "report.json").read_text())["artifacts"]["planned"]
    assert row2["runtime"]["runtime"] == row["runtime"]["runtime"]
    assert {t: v["sha256"] for t, v in row2["towers"].items()} == {t: v["sha256"] for t, v in row["towers"].items()}


def test_runtime_auto_belongs_to_quantize_auto(tmp_path):
    result = invoke("validate", str(_recipe(tmp_path, "    - {name: d, quantize: dynamic, runtime: auto}\n")))
    assert result.exit_code == 2 and "export.variants[0]" in result.output and "quantize auto" in result.output
