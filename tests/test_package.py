from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT, invoke


def test_import_is_light():
    code = ("import sys, mmcompress, mmcompress.cli, mmcompress.recipe, mmcompress.errors; "
            "heavy = [m for m in ('onnxruntime', 'transformers', 'onnx', 'torch') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_recipe_docs_are_generated_from_the_schema():
    from mmcompress.recipe_docs import render

    assert (ROOT / "docs" / "recipe.md").read_text() == render(), "run `make docs` to regenerate docs/recipe.md"


def test_missing_backend_exits_4(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    result = invoke("validate", str(ROOT / "recipes" / "clip-shapes-tiny.yaml"))
    assert result.exit_code == 4
    assert "backend 'onnxruntime' is not installed (needed by export.variants and checks); install it: pip install onnxruntime" in result.output


def test_list_and_zoo_list():
    out = invoke("list").output
    assert "onnxruntime" in out and "int8:" in out
    zoo = invoke("zoo", "list").output
    assert zoo.startswith("shapes-clip ") and "shapes-clip-tiny" in zoo


def test_zoo_build_trains_once_then_reuses():
    first = invoke("zoo", "build", "shapes-clip-tiny")
    assert first.exit_code == 0
    path = first.output.strip().splitlines()[-1]
    assert (Path(path) / "mmcompress_zoo.json").is_file() and (Path(path) / "model.safetensors").is_file()
    again = invoke("zoo", "build", "shapes-clip-tiny")
    assert again.output.strip().splitlines()[-1] == path
    assert "is not a zoo teacher" in invoke("zoo", "build", "nope").output
