"""Orders the stages of a run, owns the run directory and the cache keys.

runs/<name>/
  recipe.json               the validated recipe, every default filled in
  teacher/                  teacher embeddings on the eval inputs (embeddings.npz + manifest.json)
  export-onnx/              image.onnx, text.onnx + manifest.json (input spec, parity with PyTorch)
  variants/<variant>/       converted towers + manifest.json (parent, quantizer settings)
  checks/<artifact>/        the artifact's embeddings on the eval inputs (embeddings.npz + manifest.json)
  report.json               versioned (docs/report.md)
A stage is reused when its manifest's cache key (hash of its config, its parents' keys and the code version)
matches and its files still have their recorded sha256; otherwise it and everything after it recompute.
Latency is always measured afresh: it is a property of this machine now, not of the artifact.
"""
from __future__ import annotations

import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import mmcompress
from mmcompress import artifact as art
from mmcompress.errors import MMCompressError, RecipeError, StageError
from mmcompress.progress import bar, console, stage_line
from mmcompress.recipe import Recipe

TOWER_FILES = {"image": "image.onnx", "text": "text.onnx"}


@dataclass
class Run:
    recipe: Recipe
    recipe_path: Path
    run_dir: Path
    threads: int
    stages: list[dict] = field(default_factory=list)

    def stage(self, name: str, folder: Path, key_obj: dict, compute: Callable[[Path], tuple[dict, dict]]) -> dict:
        """Reuse `folder` if its manifest matches the key; else clear it and call compute(folder) -> (files, extra).

        compute writes its files (atomically) into folder and returns {name: facts} and extra manifest fields.
        """
        key = art.stable_hash({"stage": name, "code": mmcompress.__version__, **key_obj})
        manifest = art.read_valid_manifest(folder, key)
        if manifest is not None:
            stage_line(name, "cached")
            self.stages.append({"name": name, "status": "cached", "dir": str(folder.relative_to(self.run_dir))})
            return manifest
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        t0 = time.perf_counter()
        try:
            files, extra = compute(folder)
        except MMCompressError:
            raise
        except Exception as e:  # a failure inside a backend: keep the traceback, name the stage
            raise stage_failure(self.run_dir, name, e) from e
        seconds = time.perf_counter() - t0
        manifest = art.write_manifest(folder, stage=name, cache_key=key, files=files,
                                      config=key_obj.get("config"), parents=key_obj.get("parents", {}),
                                      extra={"seconds": round(seconds, 2), **extra})
        stage_line(name, "done", f"{seconds:.1f} s")
        self.stages.append({"name": name, "status": "ran", "seconds": round(seconds, 2),
                            "dir": str(folder.relative_to(self.run_dir))})
        return manifest


def stage_failure(run_dir: Path, name: str, e: Exception) -> StageError:
    """A StageError naming the stage; the traceback goes to run_dir/error.log (call inside `except`)."""
    log = run_dir / "error.log"
    log.write_text(traceback.format_exc())
    return StageError(f"stage {name} failed: {type(e).__name__}: {e}\n(traceback in {log})")


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    with art.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def execute(recipe: Recipe, recipe_path: Path, run_dir: Path | None = None) -> dict:
    """Run every stage and check; returns the report (also written to run_dir/report.json)."""
    from mmcompress import report
    from mmcompress.report import html as report_html
    from mmcompress.checks import evaluate as checks
    from mmcompress.checks import latency
    from mmcompress.export import onnx as onnx_export
    from mmcompress.export import quantize_onnx
    from mmcompress.data import load_data
    from mmcompress.machine import fingerprint
    from mmcompress.models import load_teacher

    t_start = time.perf_counter()
    run_dir = Path(run_dir or Path("runs") / recipe.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    art.write_json(run_dir / "recipe.json", recipe.model_dump(mode="json"))
    threads = recipe.checks.threads or os.cpu_count() or 1
    latency.set_threads(threads)
    run = Run(recipe, recipe_path, run_dir, threads)
    base = recipe.base  # relative paths in the recipe are relative to its file
    console.print(f"[bold]mmcompress[/bold] {recipe.name} -> {run_dir}  ({threads} threads, {fingerprint()['int8_path']})")

    t0 = time.perf_counter()
    try:
        with bar("training teacher (first use)") as update:
            bundle = load_teacher(recipe.teacher, base,
                                  lambda step, total, loss: update(step, total, f"loss {loss:.3f}"))
        src = bundle.source
        stage_line("teacher", "done" if src.get("trained_now") else "loaded",
                   f"{src['kind']}:{src.get('name') or src.get('path') or src.get('entrypoint')} {bundle.task} "
                   f"{time.perf_counter() - t0:.1f} s")
        dataset = load_data(recipe.data, recipe.seed, base)
        inputs = checks.prepare_inputs(bundle, dataset)
    except MMCompressError:
        raise
    except Exception as e:  # loading the teacher or the data failed inside a library
        raise stage_failure(run_dir, "teacher and data", e) from e
    teacher_source = {k: v for k, v in src.items() if k != "trained_now"}
    for i, v in enumerate(recipe.export.variants):
        if v.quantize != "none" and not set(v.towers) & set(bundle.towers):
            raise RecipeError(f"{recipe.where('export', 'variants', i, 'towers')}: the teacher has no "
                              f"{' or '.join(v.towers)} tower (it has {', '.join(bundle.towers)}); list one of those")
    teacher_key = {"teacher": teacher_source, "data": inputs.key}

    teacher_m = run.stage("teacher-outputs", run_dir / "teacher", {"config": teacher_key},
                          lambda d: checks.embed_teacher(bundle, inputs, d))
    teacher_emb = load_npz(run_dir / "teacher" / "embeddings.npz")

    export_m = run.stage("export-onnx", run_dir / "export-onnx",
                         {"config": recipe.export.onnx.model_dump(), "parents": {"teacher": teacher_m["cache_key"]}},
                         lambda d: onnx_export.stage(bundle, recipe.export.onnx, inputs, teacher_emb, d))
    artifacts = {}
    for v in recipe.export.variants:
        folder = run_dir / "variants" / v.name
        cfg = v.model_dump(exclude={"budgets"})
        parents = {"export-onnx": export_m["cache_key"], **({"data": inputs.key} if v.quantize == "static" else {})}
        m = run.stage(f"variant {v.name}", folder, {"config": cfg, "parents": parents},
                      lambda d, v=v: quantize_onnx.stage(v, run_dir / "export-onnx", inputs, d))
        towers, shas = {}, {}
        for t in bundle.towers:
            own = t in v.towers and v.quantize != "none"
            towers[t] = (folder if own else run_dir / "export-onnx") / TOWER_FILES[t]
            shas[t] = (m if own else export_m)["files"][TOWER_FILES[t]]["sha256"]
        artifacts[v.name] = {"variant": v, "manifest": m, "towers": towers, "sha256": shas}
    for name, a in artifacts.items():
        folder = run_dir / "checks" / name
        # keyed by the towers' content: a graph rebuilt bit for bit keeps its evaluation
        run.stage(f"evaluate {name}", folder, {"config": {"artifact": name},
                                              "parents": {"towers": a["sha256"], "data": inputs.key}},
                  lambda d, a=a: checks.embed_artifact(a["towers"], inputs, threads, d))
        a["embeddings"] = load_npz(folder / "embeddings.npz")

    timings = checks.measure_latency(bundle, artifacts, inputs, recipe.checks, threads)
    rep = report.build(run, bundle, dataset, inputs, teacher_emb, artifacts, timings,
                       seconds=time.perf_counter() - t_start)
    art.write_json(run_dir / "report.json", rep)
    with art.atomic_path(run_dir / "report.html") as tmp:
        tmp.write_text(report_html.render(rep))
    return rep

