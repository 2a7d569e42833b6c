"""Budgets -> verdicts. Each budget becomes one row per tower / batch / text length it applies to, so a failure
names exactly which figure missed which limit. A tower the variant does not own (it stays the fp32 export)
gets rows marked not gated (passed None) instead of a silent pass."""
from __future__ import annotations

from mmcompress.checks.latency import budget_point
from mmcompress.recipe import Budgets

UNDECIDED = ("undecided: the 95% interval {lo:.4g}-{hi:.4g} straddles the limit, so it passes (a latency budget "
             "fails only when the whole interval misses); more rounds (checks.rounds) narrow it")


def _judged(value: float, interval: list | None, limit: float, higher_is_better: bool) -> tuple[bool, str | None]:
    """A latency figure against its budget on its 95% interval: fail only when the whole interval misses, pass
    when the whole interval meets it, undecided (passes, said so) when it straddles the limit. Without an
    interval (a report written before intervals were recorded): the median decides."""
    ok = value >= limit if higher_is_better else value <= limit
    if not interval:
        return ok, None
    lo, hi = interval
    meets_all = lo >= limit if higher_is_better else hi <= limit
    misses_all = hi < limit if higher_is_better else lo > limit
    if meets_all or misses_all:
        return meets_all, None
    return True, UNDECIDED.format(lo=lo, hi=hi)


NOT_OWN = "not gated: this variant leaves the tower as the fp32 export (gate it with a `quantize: none` variant)"


def _row(budget: str, value: float | None, limit: float, ok: bool | None, tower: str | None = None,
         batch: int | None = None, seq_len: int | None = None, note: str | None = None,
         interval: list | None = None, undecided: bool = False) -> dict:
    row = {"budget": budget, "tower": tower, "batch": batch, "seq_len": seq_len, "value": value, "limit": limit,
           "passed": None if ok is None else bool(ok)}
    if interval:
        row["ci95"] = [float(x) for x in interval]
    if undecided:
        row["undecided"] = True
    if note:
        row["note"] = note
    return row


def evaluate(artifact: dict, budgets: Budgets) -> list[dict]:
    """artifact: the report entry of one candidate (accuracy, fidelity, latency, size_mb, towers with 'gated')."""
    rows = []
    towers = artifact["towers"]
    if budgets.max_accuracy_drop is not None:
        if artifact["accuracy"].get("delta") is None:  # no labels and no pairs: nothing to gate on
            rows.append(_row("max_accuracy_drop", None, budgets.max_accuracy_drop, False))
        else:
            drop = -artifact["accuracy"]["delta"] + 0.0  # + 0.0: a zero drop is 0, not -0
            rows.append(_row("max_accuracy_drop", round(drop, 3), budgets.max_accuracy_drop,
                             drop <= budgets.max_accuracy_drop + 1e-9))
    if budgets.min_top1_agreement is not None:
        v = artifact["fidelity"].get("top1_agreement")
        rows.append(_row("min_top1_agreement", None if v is None else round(v, 3), budgets.min_top1_agreement,
                         False if v is None else v >= budgets.min_top1_agreement - 1e-9))
    for tower, info in towers.items():
        gated = info.get("gated", info.get("converted"))
        note = None if gated else NOT_OWN
        if budgets.min_cosine is not None:
            v = artifact["fidelity"][tower]["min"]
            rows.append(_row("min_cosine", v, budgets.min_cosine, (v >= budgets.min_cosine) if gated else None,
                             tower, note=note))
        if budgets.min_speedup is not None:
            for lat in artifact["latency"].get(tower, {}).values():
                v = lat["speedup"]
                ok, why = _judged(v, lat.get("speedup_ci95"), budgets.min_speedup, higher_is_better=True)
                rows.append(_row("min_speedup", v, budgets.min_speedup, ok if gated else None,
                                 tower, lat.get("batch"), lat.get("seq_len"), note or why,
                                 interval=lat.get("speedup_ci95"), undecided=bool(gated and why)))
    for tower, per_batch in (budgets.max_latency_ms or {}).items():
        lat = artifact["latency"].get(tower)
        if lat is None:
            continue  # a tower the teacher lacks is a recipe error before the run; here: nothing to time
        for batch, limit in per_batch.items():
            key = budget_point(lat, batch)
            v, interval = lat[key]["median_ms"], lat[key].get("median_ci95_ms")
            ok, why = _judged(v, interval, limit, higher_is_better=False)
            rows.append(_row("max_latency_ms", v, limit, ok, tower, batch, lat[key].get("seq_len"), why,
                             interval=interval, undecided=bool(why)))
    if budgets.max_size_mb is not None:
        v = artifact["size_mb"]
        rows.append(_row("max_size_mb", v, budgets.max_size_mb, v <= budgets.max_size_mb))
    return rows


def verdict(rows: list[dict]) -> str:
    """'fail' if any gated row failed, 'pass' if gated rows exist and all passed, else 'not gated'."""
    gated = [r["passed"] for r in rows if r["passed"] is not None]
    if not gated:
        return "not gated"
    return "pass" if all(gated) else "fail"


def describe(name: str, row: dict) -> str:
    where = "".join([f" {row['tower']} tower" if row["tower"] else "", f" at batch {row['batch']}" if row["batch"] else "",
                     f", {row['seq_len']} tokens" if row.get("seq_len") else ""])
    op = "<=" if row["budget"].startswith("max") else ">="
    if row.get("ci95"):  # a latency budget: it failed because the whole interval missed
        lo, hi = row["ci95"]
        return f"{name}{where}: {row['budget']} {row['value']:.4g} (95% interval {lo:.4g}-{hi:.4g}) is not {op} {row['limit']:g}"
    if row["value"] is None:
        what = "class predictions to agree on" if row["budget"] == "min_top1_agreement" else "labels or pairs for an accuracy metric"
        return f"{name}{where}: {row['budget']} cannot be checked: the eval data has no {what}"
    return f"{name}{where}: {row['budget']} {row['value']:.4g} is not {op} {row['limit']:g}"
