"""Torch-side stages (Bundle -> Bundle) that run between loading the teacher and the ONNX export.

One module per stage, one config class in recipe.py, dispatched by config type through STAGES:
    run(parent bundle, cfg, ctx, folder) -> (files, manifest extra)   trains and saves into folder
    load(parent bundle, cfg, folder, base, where) -> Bundle          rebuilds the saved model (also when cached)
students.py builds a smaller student from the teacher; losses.py holds the distillation losses; prune.py
cuts heads and channels out and recovers with distillation's training loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class Context:
    """What a torch-side stage gets from the pipeline besides its parent model."""

    teacher: Any                 # the teacher's Bundle: what every stage's model is measured against
    dataset: Any                 # data.base.Dataset (the train split trains)
    inputs: Any                  # checks.evaluate.EvalInputs (the eval split, preprocessed)
    teacher_emb: dict            # the teacher's embeddings of inputs
    targets: dict                # the teacher's outputs on the train split (distill.teacher_targets)
    recipe: Any
    threads: int
    where: Callable[..., str]    # (*keys under this stage) -> 'recipe.yaml:14 stages[0].distill.towers'


def stages() -> dict:
    """config class -> the stage module (run, load)."""
    from mmcompress.compress import distill, prune
    from mmcompress.recipe import DistillConfig, PruneConfig

    return {DistillConfig: distill, PruneConfig: prune}


def stage_module(cfg):
    return stages()[type(cfg)]


def load_model(recipe, run_dir, name: str | None = None):
    """The model a stage of a finished run made (default: the last stage's), rebuilt in any process from the run
    directory: the teacher loaded as the recipe says, then each stage up to `name` from run_dir/stages/<stage>.

        from mmcompress import recipe, compress
        bundle = compress.load_model(recipe.load("recipes/clip-shapes-prune.yaml"), "runs/clip-shapes-prune")
        bundle.towers["image"](pixel_values)   # a torch module: the pruned, recovered image tower
    """
    from mmcompress.errors import RecipeError
    from mmcompress.models import load_teacher

    names = [e.config.name for e in recipe.stages]
    if name is not None and name not in names + ["teacher"]:
        raise RecipeError(f"{name!r} is not a model of this recipe; use one of {', '.join(['teacher', *names])}")
    bundle = load_teacher(recipe.teacher, recipe.base)
    for i, entry in enumerate(recipe.stages):
        if name == "teacher":
            break
        cfg = entry.config
        folder = Path(run_dir) / "stages" / cfg.name
        if not (folder / "manifest.json").is_file():
            raise RecipeError(f"{folder}: stage {cfg.name!r} has not finished in this run directory; run the recipe "
                              f"first (mmcompress run ... --run-dir {run_dir})")
        where = lambda *keys, i=i, kind=entry.kind: recipe.where("stages", i, kind, *keys)
        bundle = stage_module(cfg).load(bundle, cfg, folder, recipe.base, where)
        if cfg.name == name:
            break
    return bundle
