from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import invoke
from mmcompress.checks import gate, latency
from mmcompress.recipe import Budgets


class Recorder:
    """A session that records the order of calls (the timing loop's contract, not a stand-in for a runtime)."""

    def __init__(self, name, log):
        self.name, self.log = name, log

    def run(self, feeds):
        self.log.append(self.name)
        return feeds["x"]


def test_measure_warms_up_and_rotates_order():
    log = []
    sessions = {n: Recorder(n, log) for n in "abc"}
    times = latency.measure(sessions, {"x": np.zeros(1)}, rounds=3, warmup=2)
    assert log[:6] == list("aabbcc")
    assert log[6:] == list("abc") + list("bca") + list("cab")
    assert all(len(t) == 3 for t in times.values())


def test_a_sessions_settle_pause_follows_its_call_untimed():
    import time

    class Spinner(Recorder):
        settle_s = 0.05

    log = []
    sessions = {"torch": Spinner("torch", log), "ort": Recorder("ort", log)}
    t0 = time.perf_counter()
    times = latency.measure(sessions, {"x": np.zeros(1)}, rounds=4, warmup=0)
    assert time.perf_counter() - t0 >= 4 * 0.05  # paused after each of its calls
    assert times["torch"].max() < 0.05 and times["ort"].max() < 0.05  # and the pause is in no one's time


def test_summary_speedup_and_interval():
    times = {"teacher": np.array([0.010, 0.011, 0.009, 0.010]), "fast": np.array([0.005, 0.005, 0.004, 0.006])}
    s = latency.summarize(times, "teacher")
    assert s["teacher"]["median_ms"] == 10.0 and "speedup" not in s["teacher"]
    assert s["fast"]["speedup"] == 2.0
    lo, hi = s["fast"]["speedup_ci95"]
    assert lo <= 2.0 <= hi
    assert s["fast"]["quantiles_ms"][0] == 4.0 and s["fast"]["quantiles_ms"][3] == 5.0 and s["fast"]["quantiles_ms"][-1] == 6.0
    assert s["teacher"]["quantiles_ms"] == sorted(s["teacher"]["quantiles_ms"])


def _entry(drop=0.5, cos=0.995, speedup=1.5, ms=3.0, mb=2.0, text_gated=False):
    image = {"1": {"median_ms": ms, "speedup": speedup, "batch": 1, "seq_len": None, "seq_len_from": None}}
    text = {f"1@{n}": {"median_ms": ms * n / 8, "speedup": 0.5, "batch": 1, "seq_len": n, "seq_len_from": src}
            for n, src in [(8, "eval median"), (16, "eval p90"), (64, "recipe")]}
    return {"towers": {"image": {"converted": True, "gated": True}, "text": {"converted": False, "gated": text_gated}},
            "accuracy": {"delta": -drop}, "fidelity": {"image": {"min": cos}, "text": {"min": 0.5}},
            "latency": {"image": image, "text": text}, "size_mb": mb}


def test_gate_rows_name_tower_batch_and_limit():
    b = Budgets(max_accuracy_drop=1.0, min_cosine=0.99, min_speedup=2.0, max_latency_ms={"image": {1: 5.0}}, max_size_mb=1.0)
    rows = gate.evaluate(_entry(), b)
    verdicts = {(r["budget"], r["tower"], r["batch"], r["seq_len"]): r["passed"] for r in rows}
    # the text tower is not the variant's own: its rows are shown, not gated (None), never a silent pass
    assert verdicts == {("max_accuracy_drop", None, None, None): True, ("min_cosine", "image", None, None): True,
                        ("min_speedup", "image", 1, None): False, ("max_latency_ms", "image", 1, None): True,
                        ("max_size_mb", None, None, None): False, ("min_cosine", "text", None, None): None,
                        **{("min_speedup", "text", 1, n): None for n in (8, 16, 64)}}
    failed = [gate.describe("int8", r) for r in rows if r["passed"] is False]
    assert failed == ["int8 image tower at batch 1: min_speedup 1.5 is not >= 2", "int8: max_size_mb 2 is not <= 1"]
    assert gate.verdict(rows) == "fail"


def test_gated_text_tower_is_checked_at_every_length_and_latency_budget_at_p90():
    b = Budgets(min_cosine=0.99, min_speedup=0.4, max_latency_ms={"text": {1: 5.0}})
    rows = gate.evaluate(_entry(text_gated=True), b)
    text = [r for r in rows if r["tower"] == "text"]
    assert [(r["budget"], r["seq_len"], r["passed"]) for r in text] == [
        ("min_cosine", None, False), ("min_speedup", 8, True), ("min_speedup", 16, True), ("min_speedup", 64, True),
        ("max_latency_ms", 16, False)]  # at the p90 length: 3 ms * 16 / 8 = 6 ms > 5
    assert gate.describe("int8", text[-1]) == "int8 text tower at batch 1, 16 tokens: max_latency_ms 6 is not <= 5"


def _timed(speedup: float, ci: list, median_ms: float, median_ci: list) -> dict:
    lat = {"1": {"median_ms": median_ms, "median_ci95_ms": median_ci, "speedup": speedup, "speedup_ci95": ci,
                 "batch": 1, "seq_len": None}}
    return {"towers": {"image": {"converted": True, "gated": True}}, "accuracy": {"delta": 0.0},
            "fidelity": {"image": {"min": 1.0}}, "latency": {"image": lat}, "size_mb": 1.0}


@pytest.mark.parametrize("speedup,ci,median,median_ci,want", [
    (1.05, [0.98, 1.12], 5.2, [4.8, 5.6], (True, True)),    # both intervals straddle their limits: undecided, pass
    (0.95, [0.90, 0.99], 5.8, [5.3, 6.1], (False, False)),  # whole intervals miss: fail
    (1.20, [1.15, 1.25], 4.5, [4.2, 4.9], (True, True)),    # whole intervals meet: pass, decided
])
def test_latency_budgets_are_judged_on_the_interval_not_the_median(speedup, ci, median, median_ci, want):
    rows = gate.evaluate(_timed(speedup, ci, median, median_ci),
                         Budgets(min_speedup=1.1, max_latency_ms={"image": {1: 5.0}}))
    by = {r["budget"]: r for r in rows}
    assert (by["min_speedup"]["passed"], by["max_latency_ms"]["passed"]) == want
    straddles = ci[0] < 1.1 <= ci[1]
    assert by["min_speedup"].get("undecided", False) == straddles and by["min_speedup"]["ci95"] == ci
    if straddles:
        assert "straddles the limit" in by["min_speedup"]["note"] and gate.verdict(rows) == "pass"
    if not want[0]:
        assert gate.describe("q", by["min_speedup"]) == "q image tower at batch 1: min_speedup 0.95 (95% interval 0.9-0.99) is not >= 1.1"


def test_summaries_carry_the_medians_interval():
    rng = np.random.default_rng(0)
    rows = latency.summarize({"teacher": 0.01 + rng.random(50) * 1e-3, "x": 0.005 + rng.random(50) * 1e-3}, "teacher")
    lo, hi = rows["x"]["median_ci95_ms"]
    assert lo <= rows["x"]["median_ms"] <= hi and hi - lo < 1.0


def test_verdict_is_not_gated_without_gated_rows():
    assert gate.evaluate(_entry(), Budgets()) == []
    assert gate.verdict([]) == "not gated"
    rows = gate.evaluate({**_entry(), "towers": {"image": {"gated": False}, "text": {"gated": False}}},
                         Budgets(min_cosine=0.99))
    assert [r["passed"] for r in rows] == [None, None] and gate.verdict(rows) == "not gated"


def test_text_lengths_come_from_the_eval_data_rounded_up_to_8():
    counts = np.array([5] * 50 + [9] * 40 + [30] * 10)  # median 7 -> 8; p90 between 9 and 30 -> rounded up
    lengths = latency.text_lengths(counts, 64, [128], "longest")
    assert list(lengths) == [8, 16, 64]  # p90 = 9 + 0.1 * (30 - 9) = 11.1 -> 16
    assert lengths[8] == "eval median" and lengths[64] == "recipe"  # 128 capped at the model's 64
    assert latency.text_lengths(counts, 64, [], "max_length") == {64: "model's fixed length"}
    pts = latency.points("text", [1, 16], {8: "eval median", 24: "eval p90"})
    assert [p["key"] for p in pts] == ["1@8", "16@8", "1@24", "16@24"]
    assert [p["key"] for p in latency.points("image", [1, 16], {8: "x"})] == ["1", "16"]


def test_feeds_at_pads_and_cuts_text_to_the_asked_length():
    feeds = {"input_ids": np.array([[2, 5, 3, 0], [2, 3, 0, 0]]), "attention_mask": np.array([[1, 1, 1, 0], [1, 1, 0, 0]])}
    long = latency.feeds_at(feeds, 3, 6, pad_id=0)
    assert long["input_ids"].shape == (3, 6) and long["attention_mask"][:, 4:].sum() == 0
    assert long["input_ids"][2].tolist() == [2, 5, 3, 0, 0, 0]  # tiled rows
    short = latency.feeds_at(feeds, 2, 2)
    assert short["input_ids"].tolist() == [[2, 5], [2, 3]]



def test_trim_padding_cuts_batches_to_their_longest_row_either_side():
    from mmcompress.runtimes.base import trim_padding

    right = {"input_ids": np.array([[2, 5, 3, 0, 0], [2, 3, 0, 0, 0]]),
             "attention_mask": np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])}
    assert trim_padding(right)["input_ids"].tolist() == [[2, 5, 3], [2, 3, 0]]
    left = {k: v[:, ::-1] for k, v in right.items()}
    assert trim_padding(left)["attention_mask"].tolist() == [[1, 1, 1], [0, 1, 1]]
    images = {"pixel_values": np.zeros((2, 3, 4, 4), np.float32)}
    assert trim_padding(images) is images


class _Work:
    """A session that does a fixed amount of real work (no sleeps)."""

    def __init__(self, n: int):
        self.a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)

    def run(self, feeds):
        return self.a @ self.a


def test_adaptive_rounds_stop_when_the_interval_is_narrow_or_at_the_limit():
    from mmcompress.checks.latency import measure_adaptive

    sessions = {"ref": _Work(64), "cand": _Work(32)}
    times, why = measure_adaptive(sessions, {}, min_rounds=10, max_rounds=40, max_seconds=30, rel_width=10.0)
    assert len(times["ref"]) == 10 and why.startswith("interval within")  # any interval is within 1000%
    times, why = measure_adaptive(sessions, {}, min_rounds=10, max_rounds=40, max_seconds=30, rel_width=0.0)
    assert len(times["cand"]) == 40 and why.startswith("stopped at max_rounds 40")


def test_bench_times_every_graph_of_a_run_grouped_by_inputs(tiny_run, tmp_path):
    _, run_dir, report = tiny_run
    result = invoke("bench", str(run_dir), "--batch", "2", "--max-seconds", "2", "--seq-len", "999", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    groups = {tuple(g["inputs"]): g for g in out["groups"]}
    assert set(groups) == {("pixel_values",), ("input_ids", "attention_mask")}
    image = groups[("pixel_values",)]
    assert image["reference"] == "export-onnx/image.onnx"
    rows = image["points"]["2"]["rows"]
    assert set(rows) == {"export-onnx/image.onnx"} | {f"variants/{v}/image.onnx" for v in
                                                      ("int8-dynamic", "int8-static", "fp16")}
    assert "speedup" not in rows["export-onnx/image.onnx"] and all(r["rounds"] >= 10 for r in rows.values())
    for r in rows.values():
        assert r["items_per_s"] == pytest.approx(2 / (r["median_ms"] / 1e3))
    assert groups[("input_ids", "attention_mask")]["seq_len"] == 8  # 999 capped at the teacher's max_length
    one = invoke("bench", str(run_dir / "variants" / "int8-dynamic" / "image.onnx"), "--batch", "1",
                 "--max-seconds", "1", "--json")
    assert one.exit_code == 0 and len(json.loads(one.stdout)["groups"]) == 1
    (tmp_path / "x.txt").write_text("")
    assert invoke("bench", str(tmp_path / "x.txt")).exit_code == 2
