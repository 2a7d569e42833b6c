"""Torch-side stages (Bundle -> Bundle) that run between loading the teacher and the ONNX export.

One module per stage, one config class in recipe.py, dispatched by config type through STAGES:
    run(parent bundle, cfg, ctx, folder) -> (files, manifest extra)   trains and saves into folder
    load(parent bundle, cfg, folder, base, where) -> Bundle          rebuilds the saved model (also when cached)
students.py builds a smaller student from the teacher; losses.py holds the distillation losses.
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
    from mmcompress.compress import distill
    from mmcompress.recipe import DistillConfig

    return {DistillConfig: distill}


def stage_module(cfg):
    return stages()[type(cfg)]
