from __future__ import annotations

import numpy as np

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


def test_summary_speedup_and_interval():
    times = {"teacher": np.array([0.010, 0.011, 0.009, 0.010]), "fast": np.array([0.005, 0.005, 0.004, 0.006])}
    s = latency.summarize(times, "teacher")
    assert s["teacher"]["median_ms"] == 10.0 and "speedup" not in s["teacher"]
    assert s["fast"]["speedup"] == 2.0
    lo, hi = s["fast"]["speedup_ci95"]
    assert lo <= 2.0 <= hi


def _entry(drop=0.5, cos=0.995, speedup=1.5, ms=3.0, mb=2.0):
    lat = {"1": {"median_ms": ms, "speedup": speedup}}
    return {"towers": {"image": {"converted": True}, "text": {"converted": False}},
            "accuracy": {"delta": -drop}, "fidelity": {"image": {"min": cos}, "text": {"min": 1.0}},
            "latency": {"image": lat, "text": lat}, "size_mb": mb}


def test_gate_rows_name_tower_batch_and_limit():
    b = Budgets(max_accuracy_drop=1.0, min_cosine=0.99, min_speedup=2.0, max_latency_ms={"image": {1: 5.0}}, max_size_mb=1.0)
    rows = gate.evaluate(_entry(), b)
    verdicts = {(r["budget"], r["tower"], r["batch"]): r["passed"] for r in rows}
    assert verdicts == {("max_accuracy_drop", None, None): True, ("min_cosine", "image", None): True,
                        ("min_speedup", "image", 1): False, ("max_latency_ms", "image", 1): True,
                        ("max_size_mb", None, None): False}
    failed = [gate.describe("int8", r) for r in rows if not r["passed"]]
    assert failed == ["int8 image tower at batch 1: min_speedup 1.5 is not >= 2", "int8: max_size_mb 2 is not <= 1"]


def test_gate_without_budgets_has_no_rows():
    assert gate.evaluate(_entry(), Budgets()) == []
