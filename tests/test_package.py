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


def test_the_ci_workflow_in_the_docs_parses_and_uses_only_real_commands_and_options():
    """docs/ci.md's GitHub Actions workflow: valid YAML, and every mmcompress command line in it names a real
    subcommand with options that subcommand has (so the docs cannot drift from the CLI)."""
    import re
    import shlex

    import yaml

    from mmcompress.cli import cli

    text = (ROOT / "docs" / "ci.md").read_text()
    flow = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    steps = flow["jobs"]["gate"]["steps"]
    script = "\n".join(s.get("run", "") for s in steps).replace("\\\n", " ")
    lines = [line[line.index(".venv/bin/mmcompress"):] for line in script.splitlines() if ".venv/bin/mmcompress" in line]
    assert len(lines) >= 4
    seen = set()
    for line in lines:
        words = shlex.split(re.split(r"\)|>>|\|\|", line)[0])
        cmd = cli.commands[words[1]]
        options = {o for p in cmd.params for o in getattr(p, "opts", [])}
        used = [w for w in words[2:] if w.startswith("--")]
        assert set(used) <= options, (line, set(used) - options)
        seen.add(words[1])
    assert {"run", "gate", "fingerprint"} <= seen
    assert any(s.get("uses", "").startswith("actions/cache/restore") for s in steps)


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
