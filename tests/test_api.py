"""The Python API (mmcompress.run, load_recipe, Report) and the code in docs/api.md and docs/deploy.md, run as
written."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_run_returns_a_typed_report_with_the_artifacts_files(tiny_run):
    import mmcompress

    _, run_dir, raw = tiny_run
    report = mmcompress.Report.load(run_dir)
    assert report.passed is raw["passed"] and report.exit_code == (0 if raw["passed"] else 1)
    dyn = report.artifacts["int8-dynamic"]
    assert dyn.files["image"] == run_dir / "variants" / "int8-dynamic" / "image.onnx" and dyn.files["image"].is_file()
    assert dyn.kind == "onnxruntime-dynamic" and dyn.converted == {"image": True, "text": True}
    assert report.teacher.verdict == "reference" and "teacher" not in report.artifacts


def test_importing_the_package_imports_no_backend():
    code = ("import sys, mmcompress; mmcompress.Bundle; "
            "print(sorted(m for m in ('torch', 'onnxruntime', 'transformers', 'tensorrt') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.stdout.strip() == "[]", p.stdout + p.stderr


@pytest.mark.parametrize("page", ["api.md", "deploy.md"])
def test_the_code_in_the_docs_runs(page, tiny_run, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(), re.S)
    assert blocks
    run_dir = tiny_run[1] if page == "deploy.md" else tmp_path / "api-run"
    if page == "api.md":  # a copy of the tiny run: mmcompress.run reuses its finished stages, as a rerun does
        shutil.copytree(tiny_run[1], run_dir)
    for i, code in enumerate(blocks):  # as a user's script: a file without a __main__ guard
        script = tmp_path / f"block{i}.py"
        script.write_text(f"RUN_DIR = {str(run_dir)!r}\n" + code)
        p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert p.returncode == 0, f"{code}\n{p.stderr[-3000:]}"
        if page == "api.md" and i == 0:  # its first line is the one-liner: mmcompress.run(...).passed, .files
            first = p.stdout.strip().splitlines()[0]
            assert first.startswith(("True {'image': PosixPath(", "False {'image': PosixPath(")), p.stdout
