"""The board-side check (checks/board_check.py, shipped in every Jetson bundle as check.py): what it imports and
the Python it parses as, the shipped file run on its own against ONNX Runtime on the demo's and the VQA demo's
bundles with each variant's budgets, a missed fusion budget, its AUC, and the gate's fingerprint of engine rows
by TensorRT version. TensorRT itself cannot run here: the engine path is not executed by these tests."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, invoke
from mmcompress.checks import board_check

SOURCE = Path(board_check.__file__)
PY38 = Path("/root/.pyenv/versions/3.8.18/bin/python")
BOARD = {"numpy", "tensorrt", "cuda", "onnxruntime"}  # beyond the standard library


def _imports(tree: ast.AST):
    """(top-level module name, the function it is imported in or None at module level) per import."""
    out = []

    def walk(node, where):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                walk(child, child.name if where is None else f"{where}.{child.name}")
                continue
            if isinstance(child, ast.Import):
                out.extend((a.name.split(".")[0], where) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                out.append(((child.module or "").split(".")[0], where))
            walk(child, where)
    walk(tree, None)
    return out


def test_the_checker_parses_as_python_38_and_imports_only_numpy_the_stdlib_and_tensorrt_cuda_bindings():
    tree = ast.parse(SOURCE.read_text(), feature_version=(3, 8))
    found = _imports(tree)
    stdlib = set(sys.stdlib_module_names)
    assert {m for m, _ in found} <= stdlib | BOARD | {"__future__"}, found
    top = {m for m, where in found if where is None}
    assert top <= stdlib | {"numpy", "__future__"}, top  # nothing else at import time
    where = {m: {w for n, w in found if n == m} for m in BOARD}
    assert where["onnxruntime"] == {"OrtSession.__init__"}  # only for --onnxruntime
    assert where["tensorrt"] <= {"machine", "TrtSession.__init__", "sessions"} and where["cuda"] == {"_cudart"}
    assert not any(m == "mmcompress" for m, _ in found)


def test_the_checker_compiles_and_runs_under_python_38(trt_run, tmp_path):
    """The oldest Python a board has (JetPack 5.1.2): the interpreter's own compiler, --help, and the bundle
    check up to its first need of numpy (which that interpreter may lack: then it must say so, exit 4)."""
    if not PY38.is_file():
        pytest.skip(f"no Python 3.8 interpreter at {PY38} on this machine; the ast feature_version=(3, 8) test "
                    f"above still holds the syntax")
    d = trt_run[0] / "bundles" / "jetson-jp5.1.2"
    r = subprocess.run([str(PY38), "-m", "py_compile", str(d / "check.py")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(PY38), "-I", str(d / "check.py"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--onnxruntime" in r.stdout, r.stderr
    r = subprocess.run([str(PY38), "-I", str(d / "check.py"), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "not a bundle" in r.stderr, r.stderr
    has_numpy = subprocess.run([str(PY38), "-I", "-c", "import numpy"], capture_output=True).returncode == 0
    r = subprocess.run([str(PY38), "-I", str(d / "check.py"), str(d), "--onnxruntime"], capture_output=True, text=True)
    if not has_numpy:
        assert r.returncode == 4 and "needs numpy" in r.stderr and "python3-numpy" in r.stderr, r.stderr
    else:  # numpy there: it goes on to ONNX Runtime, which says what to install if it is missing
        assert r.returncode in (0, 4), r.stderr


# Run as a board would: the shipped file alone in a fresh interpreter, and afterwards no module of mmcompress or
# of its dependencies may have been imported.
ISOLATED = """
import json, runpy, sys
sys.argv = ["check.py"] + sys.argv[1:]
code = 0
try:
    runpy.run_path({path!r}, run_name="__main__")
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("mmcompress", "torch", "onnx", "pydantic", "click",
                                                             "rich", "yaml", "transformers", "sklearn"))
sys.stderr.write("IMPORTED " + json.dumps(heavy) + "\\n")
sys.exit(code)
"""


def _standalone(bundle: Path, *args: str) -> subprocess.CompletedProcess:
    code = ISOLATED.format(path=str(bundle / "check.py"))
    return subprocess.run([sys.executable, "-I", "-c", code, str(bundle), *args], capture_output=True, text=True,
                          cwd=bundle)


def test_the_shipped_checker_alone_passes_the_demo_bundle_on_onnxruntime_with_each_variants_budgets(trt_run):
    d = trt_run[0] / "bundles" / "jetson-jp7.2.2"
    r = _standalone(d, "--onnxruntime", "--json", "--rounds", "5")
    assert r.returncode == 0, r.stderr
    assert 'IMPORTED []' in r.stderr  # numpy, the standard library and onnxruntime only
    out = json.loads(r.stdout)
    assert out["passed"] and out["tensorrt"] == "11.4" and set(out["variants"]) == {"fp32", "trt-int8", "trt-fp16"}
    rows = {(b["budget"], b["tower"]) for b in out["variants"]["trt-int8"]["budgets"]}
    assert rows == {("max_accuracy_drop", None), ("min_cosine", "image"), ("min_cosine", "text")}
    # the same file is `mmcompress check`: the same figures from the same rows
    same = invoke("check", str(d), "--onnxruntime", "--json", "--rounds", "5")
    assert same.exit_code == 0
    ours = json.loads(same.output)
    for v in out["variants"]:
        assert ours["variants"][v]["accuracy"] == out["variants"][v]["accuracy"]
        assert ours["variants"][v]["fidelity"] == out["variants"][v]["fidelity"]


@pytest.fixture(scope="module")
def vqa_bundle(tmp_path_factory):
    """The VQA demo at test size (a fusion teacher) with TensorRT-shaped variants, one of them with budgets of
    its own (agreement, cosine, latency on the fusion tower), and bundles for JetPack 6.2 and 7.2.2."""
    tmp = tmp_path_factory.mktemp("vqa")
    r = yaml.safe_load((ROOT / "recipes" / "vqa-shapes-tiny.yaml").read_text())
    r["export"]["variants"] = [
        {"name": "fp32", "quantize": "none"},
        {"name": "trt-int8", "quantize": "static", "target": "tensorrt"},
        {"name": "trt-fp16", "quantize": "fp16", "target": "tensorrt",
         "budgets": {"min_top1_agreement": 95.0, "min_cosine": 0.99, "max_latency_ms": {"fusion": {1: 10000}}}}]
    r["export"]["jetson"] = {"jetpack": ["6.2", "7.2.2"], "eval_rows": 48}
    r["data"]["splits"] = {"calibration": 32, "eval": 96}  # test size: the run's own checks on fewer rows
    r["checks"]["batch_sizes"] = [1, 4]
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    result = invoke("run", str(path), "--run-dir", str(tmp / "run"))
    assert result.exit_code == 0, result.output
    return tmp / "run" / "bundles"


def test_a_fusion_teachers_bundle_is_checked_with_its_variants_own_budgets(vqa_bundle):
    d = vqa_bundle / "jetson-jp6.2"
    m = json.loads((d / "bundle.json").read_text())
    assert m["task"] == "vqa" and {e["tower"] for e in m["engines"]} == {"fusion"}
    r = _standalone(d, "--onnxruntime", "--json", "--rounds", "5")
    assert r.returncode == 0 and 'IMPORTED []' in r.stderr, r.stderr
    out = json.loads(r.stdout)
    fp16 = out["variants"]["trt-fp16"]
    assert fp16["accuracy"]["primary"]["metric"] == "answer_accuracy" and fp16["verdict"] == "pass"
    got = {(b["budget"], b["tower"], b["batch"]) for b in fp16["budgets"]}
    assert got == {("max_accuracy_drop", None, None), ("min_top1_agreement", None, None),
                   ("min_cosine", "fusion", None), ("max_latency_ms", "fusion", 1)}
    # the recipe-wide budgets (vqa-shapes-tiny: drop <= 5, agreement >= 90) on the variants without their own
    assert {b["budget"] for b in out["variants"]["trt-int8"]["budgets"]} == {"max_accuracy_drop", "min_top1_agreement"}
    assert out["variants"]["fp32"]["top1_agreement"] == 100.0


def test_a_missed_fusion_budget_exits_1_naming_it(vqa_bundle, tmp_path):
    d = tmp_path / "b"
    shutil.copytree(vqa_bundle / "jetson-jp7.2.2", d)
    m = json.loads((d / "bundle.json").read_text())
    # the budgets a stricter recipe would have shipped: a cosine no int8 graph reaches, a latency no machine does
    m["variants"]["trt-int8"]["budgets"].update(min_cosine=1.0, max_latency_ms={"fusion": {"1": 1e-6}})
    (d / "bundle.json").write_text(json.dumps(m))
    r = invoke("check", str(d), "--onnxruntime", "--rounds", "5", "--json")
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert not out["passed"] and out["variants"]["fp32"]["verdict"] == "pass"
    cos, lat = out["variants"]["trt-int8"]["failures"]
    assert cos.startswith("trt-int8 fusion tower: min_cosine 0.") and cos.endswith("is not >= 1")
    assert lat.startswith("trt-int8 fusion tower at batch 1, ") and ": max_latency_ms " in lat and "is not <= 1e-06" in lat
    assert json.loads((d / "check-onnxruntime.json").read_text())["variants"]["trt-int8"]["failures"] == [cos, lat]
    standalone = _standalone(d, "--onnxruntime", "--rounds", "5")
    assert standalone.returncode == 1 and "FAIL: trt-int8 fusion tower: min_cosine" in standalone.stdout


def test_match_auc_equals_scikit_learns_with_ties_and_is_the_itm_metric():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    score = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties
    assert board_check.auc(score, labels) == pytest.approx(roc_auc_score(labels, score), abs=1e-12)
    assert board_check.auc(score, np.ones(300, int)) == 0.5

    inputs = type("Inputs", (), {"blocks": {}, "labels": labels, "caption_of_image": None})
    logits = np.stack([-score, score], 1)  # a 2-way head: [no match, match]
    acc, pred = board_check.task_metrics("itm", {"fusion": logits}, inputs, "mean", [1], 5)
    assert acc["primary"] == {"metric": "match_auc", "value": round(roc_auc_score(labels, 2 * score) * 100, 2)}
    assert (pred == (score > 0)).all()


def test_gate_fingerprints_engine_rows_by_tensorrt_version(trt_run, tmp_path):
    from mmcompress import regression
    from mmcompress.errors import RecipeError

    def with_engines(version: str, name: str) -> Path:  # the report as a GPU machine's TensorRT runtime writes it
        rep = json.loads((trt_run[0] / "report.json").read_text())
        rep["artifacts"]["trt-fp16"]["runtime"] = {"runtime": "tensorrt", "device": "Orin", "tensorrt": version}
        d = tmp_path / name
        d.mkdir()
        (d / "report.json").write_text(json.dumps(rep))
        return d

    base, cand = with_engines("10.3.0", "base"), with_engines("10.13.0", "cand")
    assert regression.fingerprint(regression.read(base)[1])["tensorrt"] == "10.3.0"
    assert regression.key(regression.fingerprint(regression.read(cand)[1])).endswith("-trt10.13.0")
    assert regression.fingerprint(trt_run[1])["tensorrt"] is None  # no engine rows: no TensorRT in it
    with pytest.raises(RecipeError, match=r"trt-fp16: baseline 10.3.0, this run 10.13.0.*one baseline per"):
        regression.compare(cand, base)


def test_an_itm_teachers_bundle_is_checked_on_match_auc_and_agreement(tmp_path):
    """The tiny BLIP image-text matching teacher (2-way head; tests/test_fusion_itm.py) shipped for JetPack 7.2.2:
    the board check gates match AUC (the ITM task's metric) and top-1 agreement with the teacher's decisions."""
    from test_fusion_itm import _match_file, _recipe, _tiny_blip_itm

    path = _recipe(tmp_path, _tiny_blip_itm(tmp_path / "model"), _match_file(tmp_path))
    r = yaml.safe_load(path.read_text())
    r["export"]["variants"] = [{"name": "fp32", "quantize": "none"},
                               {"name": "trt-fp16", "quantize": "fp16", "target": "tensorrt",
                                "budgets": {"min_top1_agreement": 90.0, "max_accuracy_drop": 2.0}}]
    r["export"]["jetson"] = {"jetpack": ["7.2.2"], "eval_rows": 40}
    r["checks"]["batch_sizes"] = [1]
    path.write_text(yaml.safe_dump(r, sort_keys=False))
    result = invoke("run", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    d = tmp_path / "run" / "bundles" / "jetson-jp7.2.2"
    p = _standalone(d, "--onnxruntime", "--json", "--rounds", "5")
    assert p.returncode == 0 and 'IMPORTED []' in p.stderr, p.stderr
    out = json.loads(p.stdout)
    assert out["teacher"]["primary"]["metric"] == "match_auc" and out["teacher"]["match"]["n"] == 40
    fp16 = out["variants"]["trt-fp16"]
    rows = {b["budget"]: b for b in fp16["budgets"]}
    assert set(rows) == {"max_accuracy_drop", "min_top1_agreement"} and fp16["verdict"] == "pass"
    assert rows["min_top1_agreement"]["value"] == round(fp16["top1_agreement"], 3) >= 90.0
    run = json.loads((tmp_path / "run" / "report.json").read_text())["artifacts"]["trt-fp16"]
    assert fp16["accuracy"]["match"]["auc"] == run["accuracy"]["match"]["auc"]  # the run's rows, the same metric
