"""Orders the stages of a run, owns the run directory and the cache keys.

runs/<name>/
  recipe.json               the validated recipe, every default filled in
  teacher/                  teacher embeddings on the eval inputs (embeddings.npz + manifest.json)
  export-onnx/              image.onnx, text.onnx + manifest.json (input spec, parity with PyTorch)
  variants/<variant>/       converted towers + manifest.json (parent, quantizer settings)
  checks/<artifact>/        the artifact's embeddings on the eval inputs (embeddings.npz + manifest.json)
  report.json               versioned (docs/report.md)
A stage is reused when its manifest's cache key matches and its files still have their recorded sha256;
otherwise it and everything after it recompute. The key hashes the stage's config, its parents' keys, the
package's source (artifact.code_version) and the library versions; for stages that measure on this CPU
(evaluating an artifact) also the CPU's int8 kind, so int8 fidelity found on one kind is never reused on another.
Latency is always measured afresh: it is a property of this machine now, not of the artifact.
A run removes the previous report.json/report.html first, so a run that fails leaves no stale verdict.
"""
from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from mmcompress import artifact as art
from mmcompress.errors import MMCompressError, RecipeError, StageError, os_problem
from mmcompress.progress import bar, console, stage_line
from mmcompress.recipe import Recipe



@dataclass
class Run:
    recipe: Recipe
    recipe_path: Path
    run_dir: Path
    threads: int
    stages: list[dict] = field(default_factory=list)

    def stage(self, name: str, folder: Path, key_obj: dict, compute: Callable[[Path], tuple[dict, dict] | None],
              measured: bool = False, resumable: bool = False, collective: bool = False) -> dict:
        """Reuse `folder` if its manifest matches the key; else clear it and call compute(folder) -> (files, extra).

        compute writes its files (atomically) into folder and returns {name: facts} and extra manifest fields.
        measured: the result depends on this CPU's int8 kernels (evaluating an int8 graph), so the key has the
        CPU's int8 kind. resumable: a folder left by an interrupted attempt with the same key is kept, not
        cleared, so compute can resume from its checkpoints. Under torchrun (distributed.py) rank 0 computes
        while the other ranks wait and then read its manifest; a collective stage computes on every rank
        (training), rank 0 writing.
        """
        from mmcompress import distributed
        from mmcompress.machine import int8_kind, versions

        env = {"code": art.code_version(), "versions": versions(), **({"cpu_int8": int8_kind()} if measured else {})}
        key = art.stable_hash({"stage": name, **env, **key_obj})
        shared = distributed.world() > 1
        if shared and not collective and not distributed.is_main():
            distributed.barrier()  # rank 0 computes it (or finds it cached) meanwhile
            return self._written_by_rank0(name, folder, key)
        manifest = art.read_valid_manifest(folder, key)
        if manifest is not None:
            stage_line(name, "cached")
            self.stages.append({"name": name, "status": "cached", "dir": str(folder.relative_to(self.run_dir))})
            if shared and not collective:
                distributed.barrier()
            return manifest
        attempt = folder / ".attempt-key"  # an interrupted attempt of a resumable stage leaves its key here
        if distributed.is_main():
            resume = resumable and attempt.is_file() and attempt.read_text() == key
            if folder.exists() and not resume:
                shutil.rmtree(folder)
            folder.mkdir(parents=True, exist_ok=True)
            if resumable:
                attempt.write_text(key)
        if shared and collective:
            distributed.barrier()  # the folder is ready for every rank
        t0 = time.perf_counter()
        try:
            result = compute(folder)
        except MMCompressError:
            raise
        except Exception as e:  # a failure inside a backend: keep the traceback, name the stage
            raise (os_problem(e, folder) or stage_failure(self.run_dir, name, e)) from e
        if not distributed.is_main():
            distributed.barrier()  # rank 0 writes the manifest
            return self._written_by_rank0(name, folder, key)
        files, extra = result
        seconds = time.perf_counter() - t0
        manifest = art.write_manifest(folder, stage=name, cache_key=key, files=files,
                                      config=key_obj.get("config"), parents=key_obj.get("parents", {}),
                                      extra={"seconds": round(seconds, 2), **({"cpu_int8": env["cpu_int8"]} if measured else {}),
                                             **extra})
        attempt.unlink(missing_ok=True)
        stage_line(name, "done", f"{seconds:.1f} s")
        self.stages.append({"name": name, "status": "ran", "seconds": round(seconds, 2),
                            "dir": str(folder.relative_to(self.run_dir))})
        if shared:
            distributed.barrier()
        return manifest

    def _written_by_rank0(self, name: str, folder: Path, key: str) -> dict:
        from mmcompress import distributed

        manifest = art.read_valid_manifest(folder, key)
        if manifest is None:
            raise StageError(f"stage {name}: rank {distributed.rank()} cannot read what rank 0 wrote in {folder}; "
                             f"under torchrun the run directory must be on a filesystem every process sees "
                             f"(--run-dir on shared storage)")
        return manifest


def _failure(run: Run, stage: str, e: StageError, runtime: str) -> dict:
    """The report's entry for a variant that has no row, said on the terminal as it happens."""
    from mmcompress.runtimes.contain import RuntimeCrash

    console.print(f"[red]{stage} failed[/red]: {e}")
    run.stages.append({"name": stage, "status": "failed"})
    crash = isinstance(e, RuntimeCrash)
    if crash:  # no traceback to keep (the process that had one is gone); error.log still says what happened
        with (run.run_dir / "error.log").open("a") as f:
            f.write(f"--- stage {stage}\n{e}\n")
    return {"stage": stage, "runtime": runtime, "error": str(e), "crashed": crash,
            **({"how": e.how} if crash else {})}


def stage_failure(run_dir: Path, name: str, e: BaseException) -> StageError:
    """A StageError naming the stage; the traceback goes to run_dir/error.log (call inside `except`)."""
    from mmcompress import distributed

    log = run_dir / ("error.log" if distributed.is_main() else f"error.rank{distributed.rank()}.log")
    try:
        with log.open("a") as f:  # appended: a run that goes on after a variant failed may fail again
            f.write(f"--- stage {name}\n{traceback.format_exc()}\n")
    except OSError:  # a full disk: the message still says what failed
        log = "nowhere: the run directory cannot be written"
    return StageError(f"stage {name} failed: {type(e).__name__}: {e}\n(traceback in {log})")


def execute(recipe: Recipe, recipe_path: Path, run_dir: Path | None = None) -> dict | None:
    """Run every stage and check; returns the report (also written to run_dir/report.json and report.html).
    Under torchrun, ranks other than 0 return None once the torch-side stages are done."""
    from mmcompress import distributed

    run_dir = Path(run_dir or Path("runs") / recipe.name)
    distributed.init()
    if distributed.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("report.json", "report.html", "error.log"):  # a run that fails must not leave an old verdict
            (run_dir / stale).unlink(missing_ok=True)
    else:
        console.quiet = True  # one voice under torchrun: rank 0's
    distributed.barrier()
    step = ["setup"]
    try:
        return _execute(recipe, recipe_path, run_dir, step)
    except (MMCompressError, KeyboardInterrupt):
        raise
    except Exception as e:  # anything unexpected, in any step: exit 3 with the traceback in error.log
        raise (os_problem(e, run_dir) or stage_failure(run_dir, step[0], e)) from e


def _execute(recipe: Recipe, recipe_path: Path, run_dir: Path, step: list[str]) -> dict | None:
    """DESIGN's data flow, one call per box: teacher and data -> teacher outputs -> torch stages -> ONNX export
    -> variants (export.handlers(), then each runtime's prepare) -> evaluate -> bundles -> latency -> report."""
    from mmcompress import distributed
    from mmcompress.checks import evaluate, latency

    t_start = time.perf_counter()
    run = _start(recipe, recipe_path, run_dir)
    step[0] = "teacher and data"
    bundle, dataset, inputs, teacher_source = _teacher_and_data(run)
    art.write_json(run_dir / "recipe.json", recipe.model_dump(mode="json"))  # every default resolved by now
    step[0] = "teacher-outputs"
    teacher_m = run.stage("teacher-outputs", run_dir / "teacher", {"config": {"teacher": teacher_source,
                                                                              "data": inputs.key}},
                          lambda d: evaluate.embed_teacher(bundle, inputs, d))
    teacher_emb = art.load_npz(run_dir / "teacher" / "embeddings.npz")
    # every model a variant can start from: name -> (bundle, identity key, its PyTorch outputs on the eval inputs)
    models = {"teacher": (bundle, teacher_m["cache_key"], teacher_emb)}
    if recipe.stages:
        models.update(_torch_stages(run, recipe, bundle, dataset, inputs, teacher_source, teacher_emb, step))
    distributed.close()  # training is done: the other ranks stop here, rank 0 exports and checks alone
    if not distributed.is_main():
        return None
    exports = _exports(run, models, inputs, step)
    made, failed = _variants(run, models, exports, inputs, dataset, step)
    artifacts, evaluations = _evaluate(run, made, inputs, failed, step)
    bundles = _bundles(run, made, bundle, inputs, teacher_m, teacher_emb, step)
    step[0] = "latency"
    timings = latency.measure_artifacts(bundle, artifacts, inputs, recipe.checks, run.threads)
    step[0] = "report"
    return _report(run, bundle, dataset, inputs, teacher_emb, artifacts, evaluations, timings, bundles, failed,
                   time.perf_counter() - t_start)


def _start(recipe: Recipe, recipe_path: Path, run_dir: Path) -> Run:
    from mmcompress.checks import latency
    from mmcompress.machine import fingerprint, usable_cores

    threads = recipe.checks.threads or usable_cores()
    latency.set_threads(threads)
    console.print(f"[bold]mmcompress[/bold] {recipe.name} -> {run_dir}  ({threads} threads, {fingerprint()['int8_path']})")
    return Run(recipe, recipe_path, run_dir, threads)


def _teacher_and_data(run: Run) -> tuple:
    """The teacher (trained on first use for zoo teachers), the data and its eval inputs; variants without
    `towers` get every tower of the teacher. -> (bundle, dataset, inputs, teacher source for cache keys)."""
    from mmcompress import distributed
    from mmcompress.checks.evaluate import prepare_inputs
    from mmcompress.data import load_data
    from mmcompress.models import load_teacher

    recipe, t0 = run.recipe, time.perf_counter()
    base = recipe.base  # relative paths in the recipe are relative to its file
    if not distributed.is_main():
        distributed.barrier()  # rank 0 builds a zoo teacher on first use; the others then load it
    with bar("training teacher (first use)") as update:
        bundle = load_teacher(recipe.teacher, base, lambda s, total, loss: update(s, total, f"loss {loss:.3f}"))
    if distributed.is_main():
        distributed.barrier()
    src = bundle.source
    stage_line("teacher", "done" if src.get("trained_now") else "loaded",
               f"{src['kind']}:{src.get('name') or src.get('path') or src.get('entrypoint')} {bundle.task} "
               f"{time.perf_counter() - t0:.1f} s")
    dataset = load_data(recipe.data, recipe.seed, base)
    inputs = prepare_inputs(bundle, dataset)
    if recipe.teacher.python is not None:  # its towers are known only now (zoo and hf: checked in preflight)
        from mmcompress.preflight import check_applicable, check_stages

        check_applicable(recipe, tuple(bundle.towers))
        check_stages(recipe, tuple(bundle.towers))
    for i, v in enumerate(recipe.export.variants):
        if "towers" not in v.model_fields_set and set(v.towers) != set(bundle.towers):  # default: every tower
            recipe.export.variants[i] = v = v.model_copy(update={"towers": list(bundle.towers)})
        if v.quantize != "none" and not set(v.towers) & set(bundle.towers):
            raise RecipeError(f"{recipe.where('export', 'variants', i, 'towers')}: the teacher has no "
                              f"{' or '.join(v.towers)} tower (it has {', '.join(bundle.towers)}); list one of those")
    return bundle, dataset, inputs, {k: v for k, v in src.items() if k != "trained_now"}


def _exports(run: Run, models: dict, inputs, step: list[str]) -> dict[str, tuple[Path, dict]]:
    """One ONNX export (parity-checked) per model that a variant on an ONNX runtime starts from:
    model -> (folder, manifest)."""
    from mmcompress import runtimes
    from mmcompress.export import onnx as onnx_export

    recipe, exports = run.recipe, {}
    for model in dict.fromkeys(recipe.model_of(v) for v in recipe.export.variants
                               if runtimes.get(v.runtime).runs == "onnx"):
        mb, mkey, memb = models[model]
        step[0] = name = "export-onnx" if model == "teacher" else f"export-onnx {model}"
        folder = run.run_dir / ("export-onnx" if model == "teacher" else f"export-onnx-{model}")
        exports[model] = (folder, run.stage(name, folder, {"config": recipe.export.onnx.model_dump(),
                                                           "parents": {"model": mkey}},
                                            lambda d, mb=mb, memb=memb: onnx_export.stage(mb, recipe.export.onnx,
                                                                                          inputs, memb, d)))
    return exports


def _variants(run: Run, models: dict, exports: dict, inputs, dataset, step: list[str]) -> tuple[dict, dict]:
    """Every variant made by its handler (export.make). -> (name -> Artifact, name -> failure); a variant whose
    stage fails is a named failure and the others are still made."""
    from mmcompress.export import VariantContext, make

    artifacts, failed = {}, {}
    for v in run.recipe.export.variants:
        step[0] = f"variant {v.name}"
        model = run.recipe.model_of(v)
        export_dir, export_m = exports.get(model, (None, None))
        ctx = VariantContext(run=run, recipe=run.recipe, model=model, bundle=models[model][0],
                             model_key=models[model][1], export_dir=export_dir, export_manifest=export_m,
                             inputs=inputs, dataset=dataset, folder=run.run_dir / "variants" / v.name)
        try:
            artifacts[v.name] = make(v, ctx)
        except StageError as e:
            failed[v.name] = _failure(run, step[0], e, v.runtime)
    return artifacts, failed


def _evaluate(run: Run, made: dict, inputs, failed: dict, step: list[str]) -> tuple[dict, dict]:
    """Every artifact over the eval inputs on its runtime (cached by its files' content, on this CPU kind or
    device). -> (the artifacts evaluated, name -> Evaluation); one whose runtime crashed joins `failed`."""
    from mmcompress import runtimes
    from mmcompress.checks.evaluate import Evaluation, embed_artifact

    artifacts, evaluations = {}, {}
    for name, a in made.items():
        step[0] = f"evaluate {name}"
        folder = run.run_dir / "checks" / name
        runtime = runtimes.get(a.runtime)
        where = {} if runtime.name == runtimes.DEFAULT else {"runtime": runtime.device()}
        try:
            m = run.stage(f"evaluate {name}", folder, {"config": {"artifact": name, **where},
                                                      "parents": {"towers": a.sha256, "data": inputs.key}},
                          lambda d, a=a: embed_artifact(a, inputs, run.threads, d), measured=True)
        except StageError as e:  # this variant fails; the others are still evaluated, timed and reported
            failed[name] = _failure(run, f"evaluate {name}", e, a.runtime)
            continue
        artifacts[name] = a
        evaluations[name] = Evaluation(art.load_npz(folder / "embeddings.npz"), m.get("runtime") or runtime.device())
    return artifacts, evaluations


def _bundles(run: Run, made: dict, bundle, inputs, teacher_m: dict, teacher_emb: dict, step: list[str]) -> list:
    """export.jetson: a build-on-device bundle per JetPack (graphs, build.sh, eval sample, manifest)."""
    recipe, out = run.recipe, []
    if recipe.export.jetson is None:
        return out
    from mmcompress.export import jetson

    j = recipe.export.jetson
    ship = [v.name for v in jetson.shipped(recipe) if v.name in made]
    budgets = {v.name: recipe.budgets_for(v).model_dump(mode="json") for v in jetson.shipped(recipe) if v.name in made}
    task_args = {"ensemble": recipe.data.prompts.ensemble, "recall_k": recipe.checks.recall_k,
                 "knn_k": recipe.checks.knn_k}
    for jp in j.jetpack:
        step[0] = f"bundle jetson {jp}"
        folder = run.run_dir / "bundles" / f"jetson-jp{jp}"
        m = run.stage(step[0], folder, {"config": {**j.model_dump(mode="json"), "jetpack": jp, "ship": ship, **task_args,
                                                   "budgets": budgets},  # bundle.json carries each variant's
                                        "parents": {"towers": {n: made[n].sha256 for n in ship},
                                                    "teacher": teacher_m["cache_key"], "data": inputs.key}},
                      lambda d, jp=jp: jetson.write(recipe, jp, made, bundle, inputs, teacher_emb, d, task_args))
        out.append({"jetpack": jp, "tensorrt": m.get("tensorrt"), "dir": str(folder.relative_to(run.run_dir)),
                    "engines": m.get("engines", [])})
    return out


def _report(run: Run, bundle, dataset, inputs, teacher_emb, artifacts, evaluations, timings, bundles, failed,
            seconds: float) -> dict:
    """report.json and report.html; variants that failed are named in it (and make the exit code 3)."""
    from mmcompress import report
    from mmcompress.report import html as report_html

    rep = report.build(run, bundle, dataset, inputs, teacher_emb, artifacts, evaluations, timings, seconds=seconds)
    rep["bundles"] = bundles
    if failed:
        rep["failed"] = failed
        rep["passed"] = False
        rep["failures"] += [f"{n}: {f['error']}" for n, f in failed.items()]
    art.write_json(run.run_dir / "report.json", rep)
    with art.atomic_path(run.run_dir / "report.html") as tmp:
        tmp.write_text(report_html.render(rep))
    return rep


def _torch_stages(run: Run, recipe: Recipe, teacher, dataset, inputs, teacher_source: dict, teacher_emb: dict,
                  step: list[str]) -> dict:
    """The recipe's torch-side stages in order, each from the previous model; the teacher's outputs on the train
    split are computed once (cached) and every stage learns from them. -> {stage name: (bundle, key, eval emb)}."""
    from mmcompress.compress import Context, stage_module, targets as train_targets

    run_dir = run.run_dir
    step[0] = "teacher-train-outputs"
    split = dataset.split("train")
    targets_m = run.stage("teacher-train-outputs", run_dir / "teacher-train",
                          {"config": {"teacher": teacher_source, "train": train_targets.train_key(teacher, split),
                                      "seed": recipe.seed}},
                          lambda d: train_targets.teacher_targets(teacher, split, recipe.seed, d))
    targets = art.load_npz(run_dir / "teacher-train" / "targets.npz")
    out: dict = {}
    parent, parent_key = teacher, teacher_source["cache_key"]
    for i, entry in enumerate(recipe.stages):
        kind, cfg = next((k, v) for k, v in entry if v is not None)
        mod = stage_module(cfg)
        where = lambda *keys, i=i, kind=kind: recipe.where("stages", i, kind, *keys)
        ctx = Context(teacher=teacher, dataset=dataset, inputs=inputs, teacher_emb=teacher_emb, targets=targets,
                      recipe=recipe, threads=run.threads, where=where)
        name = f"{kind} {cfg.name}"
        step[0] = name
        folder = run_dir / "stages" / cfg.name
        key = {"config": cfg.model_dump(mode="json"), "seed": recipe.seed,
               "parents": {"model": parent_key, "targets": targets_m["cache_key"], "eval": inputs.key},
               "code": mod.identity(cfg, recipe.base, where)}
        m = run.stage(name, folder, key, lambda d, p=parent, c=cfg, x=ctx, mod=mod: mod.run(p, c, x, d),
                      resumable=True, collective=True)
        parent = mod.load(parent, cfg, folder, recipe.base, where)
        parent_key = m["cache_key"]
        out[cfg.name] = (parent, parent_key, art.load_npz(folder / "embeddings.npz"))
    return out
