"""Budgets -> verdicts. Each budget becomes one row per tower/batch it applies to, so a failure names exactly
which figure missed which limit."""
from __future__ import annotations

from mmcompress.recipe import Budgets


def _row(budget: str, value: float | None, limit: float, ok: bool, tower: str | None = None,
         batch: int | None = None) -> dict:
    return {"budget": budget, "tower": tower, "batch": batch, "value": value, "limit": limit, "passed": bool(ok)}


def evaluate(artifact: dict, budgets: Budgets) -> list[dict]:
    """artifact: the report entry of one candidate (accuracy, fidelity, latency, size_mb, converted towers)."""
    rows = []
    converted = [t for t, info in artifact["towers"].items() if info["converted"]]
    if budgets.max_accuracy_drop is not None:
        if artifact["accuracy"].get("delta") is None:  # no labels and no pairs: nothing to gate on
            rows.append(_row("max_accuracy_drop", None, budgets.max_accuracy_drop, False))
        else:
            drop = -artifact["accuracy"]["delta"] + 0.0  # + 0.0: a zero drop is 0, not -0
            rows.append(_row("max_accuracy_drop", round(drop, 3), budgets.max_accuracy_drop,
                             drop <= budgets.max_accuracy_drop + 1e-9))
    if budgets.min_cosine is not None:
        for tower in converted:
            v = artifact["fidelity"][tower]["min"]
            rows.append(_row("min_cosine", v, budgets.min_cosine, v >= budgets.min_cosine, tower))
    if budgets.min_speedup is not None:
        for tower in converted:
            for batch, lat in artifact["latency"][tower].items():
                v = lat["speedup"]
                rows.append(_row("min_speedup", v, budgets.min_speedup, v >= budgets.min_speedup, tower, int(batch)))
    if budgets.max_latency_ms:
        for tower, per_batch in budgets.max_latency_ms.items():
            for batch, limit in per_batch.items():
                v = artifact["latency"][tower][str(batch)]["median_ms"]
                rows.append(_row("max_latency_ms", v, limit, v <= limit, tower, batch))
    if budgets.max_size_mb is not None:
        v = artifact["size_mb"]
        rows.append(_row("max_size_mb", v, budgets.max_size_mb, v <= budgets.max_size_mb))
    return rows


def describe(name: str, row: dict) -> str:
    where = "".join([f" {row['tower']} tower" if row["tower"] else "", f" at batch {row['batch']}" if row["batch"] else ""])
    op = "<=" if row["budget"].startswith("max") else ">="
    if row["value"] is None:
        return f"{name}{where}: {row['budget']} cannot be checked: the eval data has no labels or pairs for an accuracy metric"
    return f"{name}{where}: {row['budget']} {row['value']:.4g} is not {op} {row['limit']:g}"
