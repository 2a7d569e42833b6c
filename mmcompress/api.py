"""The Python API: `mmcompress.run(...)` does what `mmcompress run` does and returns a typed Report;
`mmcompress.load_recipe(...)` validates a recipe as `mmcompress validate` does (docs/api.md).

Errors are the CLI's: a bad recipe raises RecipeError (exit 2), a missing backend BackendMissing (4), a stage
that failed StageError (3); each carries `exit_code`. A run that completes returns its Report, whose `exit_code`
is what `mmcompress run` would exit with (0 all budgets met, 1 a budget missed, 3 a variant failed).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcompress.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_STAGE_FAILED


@dataclass(frozen=True)
class ArtifactReport:
    """One row of the report: an artifact (or the teacher) as checked against the teacher."""

    name: str
    kind: str                   # '<runtime>-<precision>', e.g. 'onnxruntime-dynamic'
    model: str                  # what it was made from: 'teacher' or a torch stage's name
    files: dict[str, Path]      # tower -> the file its runtime runs (absolute); {} for the teacher
    converted: dict[str, bool]  # tower -> converted by this variant (False: the fp32 export's graph)
    runtime: dict               # runtime, device, versions
    accuracy: dict              # 'primary' {metric, value}, 'delta' vs the teacher, the task's other metrics
    fidelity: dict              # tower -> {min, mean, ...} cosine to the teacher; top-1 agreement, KL (fusion)
    latency: dict               # tower -> point ('16', '16@24') -> median_ms, speedup, speedup_ci95, ...
    verdict: str                # 'pass', 'fail', 'not gated', 'reference'
    budgets: list               # one row per budget and tower / batch / length

    @classmethod
    def _from(cls, name: str, entry: dict, run_dir: Path) -> "ArtifactReport":
        towers = entry.get("towers", {})
        return cls(name=name, kind=entry.get("kind", ""), model=entry.get("model", "teacher"),
                   files={t: run_dir / i["path"] for t, i in towers.items() if i.get("path")},
                   converted={t: bool(i.get("converted")) for t, i in towers.items()},
                   runtime=entry.get("runtime") or {}, accuracy=entry.get("accuracy", {}),
                   fidelity=entry.get("fidelity", {}), latency=entry.get("latency", {}),
                   verdict=entry.get("verdict", ""), budgets=entry.get("budgets", []))


@dataclass(frozen=True)
class Report:
    """report.json of a run (docs/report.md), with typed access to its artifacts."""

    run_dir: Path
    passed: bool
    failures: list[str]                  # one sentence per missed budget or failed variant
    failed: dict[str, dict]              # variant -> why it has no row (its runtime crashed, its stage failed)
    teacher: ArtifactReport
    artifacts: dict[str, ArtifactReport]  # every variant that was checked, by name
    raw: dict[str, Any]                  # report.json as written

    @property
    def exit_code(self) -> int:
        """What `mmcompress run` exits with for this report."""
        if self.failed:
            return EXIT_STAGE_FAILED
        return EXIT_OK if self.passed else EXIT_CHECK_FAILED

    @classmethod
    def from_dict(cls, report: dict) -> "Report":
        run_dir = Path(report["run_dir"])
        rows = {n: ArtifactReport._from(n, e, run_dir) for n, e in report["artifacts"].items()}
        return cls(run_dir=run_dir, passed=bool(report["passed"]), failures=list(report["failures"]),
                   failed=dict(report.get("failed") or {}), teacher=rows.pop("teacher"), artifacts=rows, raw=report)

    @classmethod
    def load(cls, path: str | Path) -> "Report":
        """A finished run's report: its run directory or its report.json."""
        from mmcompress.regression import read

        return cls.from_dict(read(Path(path))[1])


def load_recipe(recipe: str | Path, overrides: list[str] | None = None):
    """A recipe file validated as `mmcompress validate` does (schema, cross-field rules, backends, the teacher's
    files, every data line) -> recipe.Recipe. overrides: ["checks.rounds=5", ...] as --set takes them."""
    from mmcompress import preflight
    from mmcompress import recipe as recipe_mod

    r = recipe_mod.load(recipe, list(overrides or []))
    preflight.check(r, str(recipe))
    return r


def run(recipe, run_dir: str | Path | None = None, overrides: list[str] | None = None) -> Report:
    """Run every stage of `recipe` (a path to a recipe file, or a Recipe from load_recipe) and check the artifacts
    against the teacher, as `mmcompress run` does. run_dir: default runs/<name> (relative to the working
    directory). -> the Report (also written to run_dir/report.json)."""
    from mmcompress import pipeline

    if isinstance(recipe, (str, Path)):
        path = Path(recipe)
        r = load_recipe(path, overrides)
    else:
        if overrides:
            raise TypeError("overrides apply to a recipe file; set the fields of a Recipe object directly")
        from mmcompress import preflight

        r = recipe
        path = r.base / f"{r.name}.yaml"
        preflight.check(r, str(path))
    report = pipeline.execute(r, path, Path(run_dir) if run_dir is not None else None)
    if report is None:  # a torchrun rank other than 0: rank 0 reports
        raise RuntimeError("this process is not rank 0 of a torchrun job; rank 0 returns the report")
    return Report.from_dict(report)
