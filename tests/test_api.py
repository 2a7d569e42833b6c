"""The Python API (mmcompress.run, load_recipe, Report) and the code in docs/api.md and docs/deploy.md, run as
written."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, TINY


def test_run_returns_a_typed_report_with_the_artifacts_files(tiny_run):
    import mmcompress

    _, run_dir, raw = tiny_run
    report = mmcompress.Report.load(run_dir)
    assert report.passed is raw["passed"] and report.exit_code == (0 if raw["passed"] else 1)
    dyn = report.artifacts["int8-dynamic"]
    assert dyn.files["image"] == run_dir / "variants" / "int8-dynamic" / "image.onnx" and dyn.files["image"].is_file()
    assert dyn.kind == "onnxruntime-dynamic" and dyn.converted == {"image": True, "text": True}
    assert report.teacher.verdict == "reference" and "teacher" not in report.artifacts


def test_the_issue_one_liner_works_in_a_fresh_process(tmp_path):
    code = (f"import mmcompress; r = mmcompress.run({str(TINY)!r}, run_dir={str(tmp_path / 'x')!r}); "
            f"print(r.passed, r.artifacts['int8-dynamic'].files)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip().splitlines()[-1].startswith(("True {'image':", "False {'image':"))


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
    for code in blocks:
        p = subprocess.run([sys.executable, "-c", f"RUN_DIR = {str(run_dir)!r}\n" + code], capture_output=True,
                           text=True, cwd=ROOT, timeout=600)
        assert p.returncode == 0, f"{code}\n{p.stderr[-3000:]}"
