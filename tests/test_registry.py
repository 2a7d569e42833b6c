"""The registries: a runtime is one class and one entry (runtimes.register), a variant kind one handler
(export.handlers); the layers import downwards only and no module outside runtimes/ and the schema compares
runtime names."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY, invoke
from mmcompress import runtimes
from mmcompress.runtimes import Runtime

PKG = ROOT / "mmcompress"


class ReferenceSession:
    """ONNX's own reference evaluator (onnx.reference): pure Python, slow, exact."""

    def __init__(self, path: Path, name: str | None):
        from onnx.reference import ReferenceEvaluator

        self.name, self._ref = name or path.stem, ReferenceEvaluator(str(path))
        self._inputs = list(self._ref.input_names)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._ref.run(None, {k: feeds[k] for k in self._inputs})[0], dtype=np.float32)


class ReferenceRuntime(Runtime):
    """A runtime added through the registry only: the fp32 graphs on onnx.reference."""

    name = "onnx-reference"
    quantize = ("none",)

    def session(self, artifact, tower, threads, name=None):
        return ReferenceSession(artifact.towers[tower], name)


@pytest.fixture
def reference_runtime():
    runtimes.register(ReferenceRuntime())
    yield
    runtimes.RUNTIMES.pop("onnx-reference")


def test_a_runtime_added_through_the_registry_runs_a_recipe_end_to_end(reference_runtime, tmp_path):
    recipe = tmp_path / "r.yaml"
    text = TINY.read_text()
    head, _, _ = text.partition("export:")
    recipe.write_text(head + "export:\n  variants:\n    - {name: fp32, quantize: none}\n"
                             "    - {name: ref, quantize: none, runtime: onnx-reference}\n"
                             "checks: {batch_sizes: [1], rounds: 5, warmup: 1, budgets: {min_cosine: 0.999}}\n")
    result = invoke("run", str(recipe), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    ref = report["artifacts"]["ref"]
    assert ref["runtime"]["runtime"] == "onnx-reference" and ref["kind"] == "onnx-reference-fp32"
    assert ref["fidelity"]["image"]["min"] > 0.9999 and ref["accuracy"] == report["artifacts"]["fp32"]["accuracy"]
    assert ref["latency"]["image"]["1"]["median_ms"] > 0 and "[onnx-reference]" in result.output


def test_a_runtime_refuses_the_variants_it_cannot_run_with_the_recipe_line(reference_runtime, tmp_path):
    recipe = tmp_path / "r.yaml"
    head, _, _ = TINY.read_text().partition("export:")
    recipe.write_text(head + "export:\n  variants:\n    - {name: q, quantize: dynamic, runtime: onnx-reference}\n")
    result = invoke("validate", str(recipe))
    assert result.exit_code == 2 and "runtime onnx-reference runs quantize none, not dynamic" in result.output
    unknown = invoke("validate", str(recipe), "--set", "export.variants[0].runtime=no-such")
    assert unknown.exit_code == 2 and "'no-such' is not a runtime" in unknown.output


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("layer,forbidden", [("runtimes", "mmcompress.export"), ("checks", "mmcompress.export")])
def test_layers_import_downwards_only(layer, forbidden):
    bad = {str(p.relative_to(ROOT)): sorted(m for m in _imports(p) if m.startswith(forbidden))
           for p in (PKG / layer).rglob("*.py")}
    assert not {k: v for k, v in bad.items() if v}


def test_no_module_outside_runtimes_and_the_schema_compares_a_runtime_name():
    """A comparison (==, in, startswith) of something called runtime with a runtime's name; 'tensorrt' as an
    int8 target (export.target) or a package name is not a runtime."""
    names = set(runtimes.names())
    found = []
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(PKG).as_posix()
        if rel.startswith("runtimes/") or rel == "recipe.py":
            continue
        text = p.read_text()
        for node in ast.walk(ast.parse(text)):
            prefix = isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "startswith"
            if not (prefix or isinstance(node, ast.Compare)) or "runtime" not in (ast.get_source_segment(text, node) or ""):
                continue
            consts = [c.value for c in ast.walk(node) if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            if any(c in names or (prefix and any(n.startswith(c) for n in names)) for c in consts if c):
                found.append(f"{rel}:{node.lineno}")
    assert not found


def test_every_variant_kind_has_a_handler_for_what_its_runtimes_run():
    from mmcompress.export import handlers
    from mmcompress.recipe import AutoVariant, Bf16Variant, DynamicVariant, Fp16Variant, Fp32Variant, StaticVariant

    table = handlers()
    for cls in (Fp32Variant, DynamicVariant, StaticVariant, Fp16Variant, AutoVariant):
        assert ("onnx", cls) in table
    for cls in (Fp32Variant, Fp16Variant, Bf16Variant):
        assert ("torch", cls) in table
    for name in ("onnxruntime", "torch-cpu", "tensorrt"):
        rt = runtimes.get(name)
        assert all(rt.runs == "onnx" or q in ("none", "fp16", "bf16") for q in rt.quantize)
