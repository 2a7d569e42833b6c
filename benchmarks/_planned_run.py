"""What the planner benchmarks share: run a recipe with a `planned` (quantize: auto) variant through the CLI
and read back, per artifact, the tower's accuracy, min cosine and latency, and the plan in brief."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def run_planned(recipe: Path, run_dir: Path, tower: str) -> dict:
    # the CLI of the Python running this script (its venv, or the checkout on PYTHONPATH)
    done = subprocess.run([sys.executable, "-m", "mmcompress", "run", str(recipe), "--run-dir", str(run_dir)],
                          stdout=subprocess.PIPE, text=True)
    print(done.stdout)
    report = json.loads((run_dir / "report.json").read_text())
    plan = json.loads((run_dir / "variants" / "planned" / "plan.json").read_text())
    rows = {}
    for name, e in report["artifacts"].items():
        primary = e["accuracy"].get("primary") or {}
        rows[name] = {"accuracy": {primary.get("metric"): primary.get("value")}, "delta_pts": e["accuracy"].get("delta"),
                      "min_cosine": e.get("fidelity", {}).get(tower, {}).get("min"),
                      "median_ms": {k: v["median_ms"] for k, v in e["latency"][tower].items()},
                      "speedup_vs_teacher": {k: v.get("speedup") for k, v in e["latency"][tower].items()},
                      "verdict": e["verdict"]}
    brief = ("method", "label", "cosine", "ms", "speedup", "speedup_ci95", "passed")
    return {"exit_code": done.returncode, "artifacts": rows,
            "plan": {t: {"reason": v["reason"], "chosen": v["chosen"], "timing": v["timing"],
                         "plans": [{k: p[k] for k in brief} | {"float": [n["module"] for n in p["float_nodes"]]}
                                   for p in v["plans"]],
                         "most_sensitive": v["sensitivity"]["nodes"][:8],
                         "sensitivity_seconds": v["sensitivity"]["seconds"]} for t, v in plan.items()},
            "planner_seconds": next(s["seconds"] for s in report["stages"] if s["name"] == "variant planned")}
