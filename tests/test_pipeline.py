"""End to end on the tiny recipe: exit codes, report contents, cache reuse, recomputation after damage."""
from __future__ import annotations

import json

import pytest

from conftest import TINY, invoke


def test_tiny_run_exits_0_with_every_artifact_checked(tiny_run):
    result, run_dir, report = tiny_run
    assert result.exit_code == 0, result.output
    from mmcompress.report import SCHEMA_VERSION

    assert report["schema_version"] == SCHEMA_VERSION and report["passed"] is True
    arts = report["artifacts"]
    assert list(arts) == ["teacher", "fp32", "int8-dynamic", "int8-static", "fp16"]
    # shapes captions are 4-5 words + BOS/EOS: median and p90 both round up to 8 tokens
    assert report["checks"]["text_lengths"] == [{"seq_len": 8, "from": "eval median, eval p90"}]
    for name, e in arts.items():
        assert set(e["latency"]) == {"image", "text"}
        assert set(e["latency"]["image"]) == {"1", "4"} and set(e["latency"]["text"]) == {"1@8", "4@8"}
        assert e["verdict"] in (("reference",) if name == "teacher" else ("pass",))
        if name != "teacher":
            assert e["latency"]["image"]["1"]["speedup"] > 0
            assert -1 <= e["fidelity"]["image"]["min"] <= 1.0000001
            assert {"image_only", "text_only"} <= set(e["accuracy"]["mixed"])
    # the fp32 export reproduces the teacher: same predictions, cosine ~1
    assert arts["fp32"]["accuracy"]["delta"] == 0.0
    assert arts["fp32"]["fidelity"]["image"]["min"] > 0.9999
    assert arts["int8-dynamic"]["towers"]["image"]["bytes"] < arts["fp32"]["towers"]["image"]["bytes"]
    assert report["machine"]["threads"] >= 1 and "isa" in report["machine"]


def test_run_dir_layout_and_manifests(tiny_run):
    _, run_dir, _ = tiny_run
    m = json.loads((run_dir / "export-onnx" / "manifest.json").read_text())
    image = m["files"]["image.onnx"]
    assert image["io"]["pixel_values"]["dtype"] == "float32"
    assert isinstance(image["io"]["pixel_values"]["shape"][0], str)  # dynamic batch
    assert image["parity"]["max_abs_diff"] < 1e-3
    assert len(image["sha256"]) == 64 and m["versions"]["onnxruntime"]
    text = m["files"]["text.onnx"]["io"]["input_ids"]["shape"]
    assert isinstance(text[0], str) and isinstance(text[1], str)  # dynamic batch and sequence
    q = json.loads((run_dir / "variants" / "int8-static" / "manifest.json").read_text())
    assert q["files"]["image.onnx"]["quantizer"]["calibration"]["samples"] == 32
    assert q["parents"]["export-onnx"] == m["cache_key"]


def test_rerun_reuses_every_stage_and_reports_same_accuracy(tiny_run, tiny_copy):
    _, _, first = tiny_run
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    second = json.loads((tiny_copy / "report.json").read_text())
    assert {s["status"] for s in second["stages"]} == {"cached"}
    for name in first["artifacts"]:
        assert second["artifacts"][name]["accuracy"] == first["artifacts"][name]["accuracy"]


def test_damaged_artifact_is_recomputed_not_reused(tiny_copy):
    onnx = tiny_copy / "variants" / "int8-dynamic" / "image.onnx"
    good = onnx.read_bytes()
    onnx.write_bytes(good[: len(good) // 2])  # a write cut short
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    report = json.loads((tiny_copy / "report.json").read_text())
    status = {s["name"]: s["status"] for s in report["stages"]}
    assert status["variant int8-dynamic"] == "ran" and onnx.read_bytes() == good
    assert status["export-onnx"] == "cached" and status["variant int8-static"] == "cached"
    # the evaluation is keyed by the graph's content: rebuilt bit for bit, it stays valid
    assert status["evaluate int8-dynamic"] == "cached"


def test_damaged_evaluation_is_recomputed(tiny_copy):
    emb = tiny_copy / "checks" / "int8-static" / "embeddings.npz"
    emb.write_bytes(b"garbage")
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    status = {s["name"]: s["status"] for s in json.loads((tiny_copy / "report.json").read_text())["stages"]}
    assert status["evaluate int8-static"] == "ran" and status["evaluate fp16"] == "cached"


def test_stage_killed_before_manifest_is_recomputed(tiny_copy):
    folder = tiny_copy / "variants" / "int8-static"
    (folder / "manifest.json").unlink()  # killed after writing the graph, before the manifest
    (folder / ".image.onnx.abc.tmp").write_bytes(b"partial")
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    status = {s["name"]: s["status"] for s in json.loads((tiny_copy / "report.json").read_text())["stages"]}
    assert status["variant int8-static"] == "ran"
    assert not (folder / ".image.onnx.abc.tmp").exists()


def test_changed_config_recomputes_from_first_changed_stage(tiny_copy, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.read_text().replace("{name: int8-static, quantize: static}",
                                               "{name: int8-static, quantize: static, per_channel: false}"))
    result = invoke("run", str(recipe), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    status = {s["name"]: s["status"] for s in json.loads((tiny_copy / "report.json").read_text())["stages"]}
    assert status["variant int8-static"] == "ran" and status["variant int8-dynamic"] == "cached"
    assert status["export-onnx"] == "cached"


def test_impossible_budget_exits_1_and_names_it(tiny_copy, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(TINY.read_text().replace("{name: fp16, quantize: fp16}",
                                               "{name: fp16, quantize: fp16, budgets: {min_speedup: 1000}}"))
    result = invoke("run", str(recipe), "--run-dir", str(tiny_copy))
    assert result.exit_code == 1
    assert "budget missed: fp16 image tower at batch 1: min_speedup" in result.output
    report = json.loads((tiny_copy / "report.json").read_text())
    assert report["passed"] is False and report["artifacts"]["fp16"]["verdict"] == "fail"
    assert report["artifacts"]["int8-dynamic"]["verdict"] == "pass"


def test_json_output_is_the_report(tiny_copy):
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy), "--json")
    assert result.exit_code == 0
    start = result.stdout.index("{")
    assert json.loads(result.stdout[start:result.stdout.rindex("}") + 1])["name"] == "clip-shapes-tiny"


def test_digits_source_runs_end_to_end(tmp_path):
    recipe = tmp_path / "digits.yaml"
    recipe.write_text(TINY.read_text().replace("source: shapes", "source: digits")
                      .replace("name: clip-shapes-tiny", "name: digits-tiny")
                      .replace("    - {name: int8-static, quantize: static}\n    - {name: fp16, quantize: fp16}\n", ""))
    result = invoke("run", str(recipe), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["data"]["classes"] == 10 and report["data"]["prompts"]["templates"] == ["a handwritten digit {digit}"]
    assert list(report["artifacts"]) == ["teacher", "fp32", "int8-dynamic"]


def test_parity_failure_exits_3_and_keeps_earlier_stages(tiny_copy, tmp_path):
    recipe = tmp_path / "strict.yaml"
    recipe.write_text(TINY.read_text().replace("export:\n", "export:\n  onnx: {parity_max_abs: 1.0e-12}\n"))
    result = invoke("run", str(recipe), "--run-dir", str(tiny_copy))
    assert result.exit_code == 3
    assert "export-onnx image tower: ONNX output does not match PyTorch: max |diff|" in result.output
    assert (tiny_copy / "teacher" / "manifest.json").is_file()
    assert not (tiny_copy / "export-onnx" / "manifest.json").exists()


def test_run_killed_midway_then_rerun_reuses_only_complete_stages(tiny_run, tmp_path):
    """A real SIGKILL during the stages: whatever was complete is reused, the rest is recomputed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "mmcompress.cli", "run", str(TINY), "--run-dir", str(run_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.time() + 120
    while not (run_dir / "variants").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "report.json").exists()
    complete = {p.parent.relative_to(run_dir).as_posix() for p in run_dir.rglob("manifest.json")}
    result = invoke("run", str(TINY), "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    status = {s["dir"]: s["status"] for s in report["stages"]}
    assert "export-onnx" in complete  # killed after the export finished
    for d, st in status.items():
        assert st == ("cached" if d in complete else "ran"), d
    assert not list(run_dir.rglob("*.tmp"))
    first = tiny_run[2]["artifacts"]
    assert {n: a["accuracy"] for n, a in report["artifacts"].items()} == {n: a["accuracy"] for n, a in first.items()}


def test_inspect_shows_a_finished_run_with_the_same_exit_code(tiny_run, tmp_path):
    _, run_dir, report = tiny_run
    shown = invoke("inspect", str(run_dir))
    assert shown.exit_code == 0 and "int8-static" in shown.stdout and "reference" in shown.stdout
    failed = dict(report, passed=False, failures=["fp16: min_speedup 0.9 is not >= 1"])
    (tmp_path / "report.json").write_text(json.dumps(failed))
    result = invoke("inspect", str(tmp_path / "report.json"))
    assert result.exit_code == 1 and "budget missed: fp16: min_speedup 0.9 is not >= 1" in result.output
    (tmp_path / "bad.json").write_text("{")
    assert invoke("inspect", str(tmp_path / "bad.json")).exit_code == 2


def test_html_report_shows_the_same_figures(tiny_run):
    _, run_dir, report = tiny_run
    page = (run_dir / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<script" not in page and "http" not in page
    static = report["artifacts"]["int8-static"]
    assert f"{static['fidelity']['image']['min']:.4f}" in page
    assert f"{static['latency']['image']['1']['speedup']:.2f}x" in page
    points = [(t, k) for t in report["artifacts"]["teacher"]["latency"] for k in report["artifacts"]["teacher"]["latency"][t]]
    assert len(points) == 2 * 2
    # per point a speedup bar chart and a latency distribution; the accuracy change; accuracy vs latency per tower
    assert page.count("<svg") == 2 * len(points) + 1 + 2
    assert page.count('class="plot distribution"') == len(points) and page.count('class="plot scatter"') == 2
    # every session (teacher and each distinct graph) gets a box in every distribution
    assert page.count('fill-opacity="0.35"') == len(points) * len(report["artifacts"])
    assert "all budgets met" in page


def test_report_html_renders_in_headless_chromium(tiny_copy, tmp_path):
    """The documented check (python -m mmcompress.report.screenshot RUN_DIR): every artifact's plot colour is
    on the screenshot; a page whose plots are gone fails it."""
    import re

    from mmcompress.report import screenshot

    if screenshot.browser() is None:
        pytest.skip("no headless Chromium here (apt-get install chromium)")
    ok = screenshot.check(tiny_copy, tmp_path / "ok.png")
    assert ok["ok"] and set(ok["pixels"]) == {"fp32", "int8-dynamic", "int8-static", "fp16"}, ok
    page = tiny_copy / "report.html"
    page.write_text(re.sub(r'<svg class="plot.*?</svg>', "", page.read_text(), flags=re.S))
    broken = screenshot.check(tiny_copy, tmp_path / "broken.png")
    assert not broken["ok"] and broken["missing"], broken
    assert screenshot.main([str(tiny_copy), str(tmp_path / "again.png")]) == 1


def _statuses(run_dir):
    return {s["name"]: s["status"] for s in json.loads((run_dir / "report.json").read_text())["stages"]}


def test_another_cpu_kind_recomputes_int8_and_its_evaluation(tiny_copy, monkeypatch):
    """A run directory made on one CPU kind and rerun on another: the int8 settings (target auto) and every
    evaluation are redone; the teacher outputs and the fp32 export are not."""
    from mmcompress import machine

    other = "vnni" if machine.int8_kind() != "vnni" else "avx2"
    monkeypatch.setattr(machine, "int8_kind", lambda: other)
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    status = _statuses(tiny_copy)
    assert status["teacher-outputs"] == status["export-onnx"] == status["variant fp32"] == "cached"
    assert status["variant int8-dynamic"] == status["variant int8-static"] == "ran"
    assert all(v == "ran" for k, v in status.items() if k.startswith("evaluate"))
    report = json.loads((tiny_copy / "report.json").read_text())
    assert report["artifacts"]["int8-dynamic"]["int8"]["target"] == other


def test_another_library_version_recomputes_everything(tiny_copy, monkeypatch):
    from mmcompress import machine

    real = machine.versions()
    monkeypatch.setattr(machine, "versions", lambda: {**real, "onnxruntime": "0.0.1"})
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy))
    assert result.exit_code == 0, result.output
    assert set(_statuses(tiny_copy).values()) == {"ran"}


def test_a_failed_run_leaves_no_report_and_exits_3(tiny_copy, monkeypatch):
    from mmcompress.checks import latency

    def broken(*a, **k):
        raise ZeroDivisionError("timing broke")
    monkeypatch.setattr(latency, "measure_artifacts", broken)
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy))
    assert result.exit_code == 3  # not 1: nothing was measured against a budget
    assert "stage latency failed: ZeroDivisionError: timing broke" in result.output
    assert not (tiny_copy / "report.json").exists() and not (tiny_copy / "report.html").exists()
    assert "ZeroDivisionError" in (tiny_copy / "error.log").read_text()
    shown = invoke("inspect", str(tiny_copy))
    assert shown.exit_code == 2 and "all budgets met" not in shown.output


def test_an_explicit_target_of_another_kind_is_reported_as_such(tiny_copy):
    from mmcompress.machine import int8_kind

    other = "vnni" if int8_kind() != "vnni" else "avx2"
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy), "--set", f"export.target={other}")
    assert result.exit_code == 0, result.output
    report = json.loads((tiny_copy / "report.json").read_text())
    i = report["artifacts"]["int8-static"]["int8"]
    assert (i["target"], i["checked_on"], i["reduce_range"]) == (other, int8_kind(), other != "vnni")
    assert f"made for {other} CPUs, checked on a {int8_kind()} CPU" in i["note"]
    assert "made for" in result.output  # the table caption says it too
    assert f"int8 for {other} CPUs" in (tiny_copy / "report.html").read_text()


def test_identical_graphs_are_timed_once_and_share_their_row(tiny_copy):
    """Two variants that produce the same bytes are one session in the timing (two sessions of one graph can
    measure apart): their latency rows are the same row."""
    result = invoke("run", str(TINY), "--run-dir", str(tiny_copy), "--set",
                    "export.variants=[{name: a, quantize: dynamic}, {name: b, quantize: dynamic}]")
    assert result.exit_code == 0, result.output
    arts = json.loads((tiny_copy / "report.json").read_text())["artifacts"]
    assert arts["a"]["towers"]["image"]["sha256"] == arts["b"]["towers"]["image"]["sha256"]
    assert arts["a"]["latency"] == arts["b"]["latency"] and arts["a"]["latency"]["image"]["1"]["speedup"] > 0


def test_progress_in_a_log_keeps_talking_past_its_total(monkeypatch):
    """In a log (not a terminal): a line per 20% of the total, then, once past it or without one, a line with the
    latest news when updates come 30 s or more after the last line (the planner judges and times candidates
    for minutes after its sensitivity step is done)."""
    from mmcompress import progress

    clock = {"t": 0.0}
    said = []
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(progress.console, "print", lambda text: said.append(text))
    with progress._log_bar("planning", 10) as update:
        for i in range(1, 11):  # sensitivity: 10 steps, 1 s apart
            clock["t"] += 1.0
            update(i)
        for info in ("judge a", "judge b", "judge c"):  # past the total: news every 30 s at most
            clock["t"] += 20.0
            update(10, None, info)
    assert len([x for x in said if "/10" in x]) == 4  # 20, 40, 60, 80% (100% is the stage line's)
    assert [x.split(": ")[1].split("  ")[0] for x in said if "/10" not in x] == ["judge b"]
