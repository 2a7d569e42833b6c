"""Every command keeps the exit-code contract (docs/cli.md) on bad input: the documented code, a message naming
the file, and no traceback on the terminal. Run as real processes, the way a user or CI meets them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, TINY


def mmc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmcompress.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=dict(os.environ), timeout=600)


def _said(p: subprocess.CompletedProcess) -> str:
    return p.stdout + p.stderr


def test_help_lists_exactly_the_commands_these_tests_cover():
    out = mmc("--help").stdout
    commands = {line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()}
    assert commands == {"bench", "check", "examples", "fingerprint", "gate", "inspect", "list", "run", "validate",
                        "zoo"}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    (d / "garbage.onnx").write_bytes(b"\x00not a graph\xff" * 10)
    (d / "notes.txt").write_text("hello")
    (d / "report.json").write_text('{"artifacts": ')
    (d / "recipe.yaml").write_text("name: [unclosed\n")
    bundle = d / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text("{ not json")
    return {"d": d, "bundle": bundle}


@pytest.mark.parametrize("args,code,names", [
    (["run", "{d}/recipe.yaml"], 2, "recipe.yaml"),
    (["validate", "{d}/recipe.yaml"], 2, "recipe.yaml"),
    (["validate", "{d}/missing.yaml"], 2, "missing.yaml"),
    (["inspect", "{d}/report.json"], 2, "report.json"),
    (["bench", "{d}/garbage.onnx"], 2, "garbage.onnx"),
    (["bench", "{d}/notes.txt"], 2, "notes.txt"),
    (["check", "{d}/bundle"], 2, "bundle"),
    (["gate", "{d}", "--baseline", "{d}/report.json"], 2, "report.json"),
    (["fingerprint", "{d}/report.json"], 2, "report.json"),
    (["examples", "{d}/notes.txt"], 2, "notes.txt"),
    (["zoo", "build", "no-such-teacher"], 2, "no-such-teacher"),
])
def test_a_bad_file_gets_its_exit_code_and_a_message_naming_it_without_a_traceback(bad, args, code, names):
    # in this process (the guard is the same code a real process runs; test_..._in_a_real_process checks that)
    from click.testing import CliRunner

    from mmcompress.cli import cli

    result = CliRunner().invoke(cli, [a.format(d=bad["d"]) for a in args], catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert names in result.stderr


def test_a_bad_file_in_a_real_process_prints_no_traceback(bad):
    p = mmc("bench", str(bad["d"] / "garbage.onnx"))
    assert p.returncode == 2 and "Traceback" not in _said(p) and "garbage.onnx" in p.stderr, _said(p)


def test_list_and_zoo_list_answer_without_a_traceback():
    from conftest import invoke

    for args in (["list"], ["zoo", "list"]):
        result = invoke(*args)
        assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "onnxruntime" in invoke("list").output


def test_a_report_of_the_wrong_shape_is_a_file_error_not_a_crash(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"name": "x"}))
    from conftest import invoke

    for args in (["fingerprint", str(tmp_path)], ["gate", str(tmp_path), "--baseline", str(tmp_path)]):
        result = invoke(*args)
        assert result.exit_code == 2 and "not a report" in result.output and "Traceback" not in result.output


def test_an_engine_mismatch_is_exit_4():
    from mmcompress.errors import EXIT_BACKEND_MISSING
    from mmcompress.runtimes.tensorrt_adapter import EngineMismatch

    assert EngineMismatch("x").exit_code == EXIT_BACKEND_MISSING


def test_an_unexpected_error_is_exit_3_with_the_traceback_in_a_log_not_on_the_terminal(tmp_path):
    # a recipe whose python teacher raises while it is built: not an mmcompress error, a bug in the user's code
    (tmp_path / "boom.py").write_text("def build():\n    raise ZeroDivisionError('inside the teacher')\n")
    (tmp_path / "r.yaml").write_text("name: boom\nteacher: {python: boom:build}\ndata: {source: shapes}\n"
                                     "export: {variants: [{name: d, quantize: dynamic}]}\n")
    p = mmc("run", str(tmp_path / "r.yaml"), "--run-dir", str(tmp_path / "run"))
    assert p.returncode in (2, 3), _said(p)
    assert "Traceback" not in _said(p) and "inside the teacher" in p.stderr


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "size=600k"):
        pytest.skip("cannot mount a small tmpfs here (needs root): the full-disk path is not exercised")
    yield disk
    subprocess.run(["umount", "-l", str(disk)])


def test_a_full_disk_names_the_path_and_the_free_space_not_exporter_advice(small_disk):
    p = mmc("run", str(TINY), "--run-dir", str(small_disk / "run"))
    assert p.returncode == 3, _said(p)
    assert "no space left on the device" in p.stderr and str(small_disk) in p.stderr and "MB free" in p.stderr
    assert "exporter" not in p.stderr and "Traceback" not in _said(p)


def test_an_unwritable_run_directory_is_a_usage_error(tmp_path):
    ro = tmp_path / "ro"
    if not _mount_tmpfs(ro, "ro,size=1m"):
        pytest.skip("cannot mount a read-only tmpfs here (needs root)")
    try:
        p = mmc("run", str(TINY), "--run-dir", str(ro / "run"))
        assert p.returncode == 2, _said(p)
        assert "cannot write there" in p.stderr and str(ro) in p.stderr and "Traceback" not in _said(p)
    finally:
        subprocess.run(["umount", "-l", str(ro)])


def test_the_full_disk_message_comes_from_a_real_enospc():
    from mmcompress.errors import DiskError, os_problem

    try:
        with open("/dev/full", "w") as f:  # the kernel's always-full device
            f.write("x")
            f.flush()
    except OSError as e:
        wrapped = RuntimeError("exporter failed")
        wrapped.__cause__ = e
        err = os_problem(wrapped, ROOT)
        assert isinstance(err, DiskError) and err.exit_code == 3 and "no space left" in str(err)
    else:
        pytest.skip("/dev/full accepted the write")
