"""Variant handlers by config type (torchao's `quantize_(model, config)` shape): every variant of a recipe is
made by `make(variant, ctx) -> Artifact`, which looks its handler up by what its runtime runs (ONNX graphs or the
PyTorch model) and the variant's config class. One signature for all:

    handler(variant, ctx: VariantContext) -> Artifact

A handler runs its work as a cached stage (`ctx.run.stage`) in `ctx.folder` and returns the typed artifact;
what the runtime then makes of it (TensorRT's engines) is the runtime's `prepare`. A new kind of variant is one
module with one handler and one entry in HANDLERS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mmcompress.artifact import Artifact, owns

TOWER_FILES = {"image": "image.onnx", "audio": "audio.onnx", "text": "text.onnx", "fusion": "fusion.onnx"}


@dataclass
class VariantContext:
    """What a handler needs: the run (stages, run directory, threads), the recipe, the model the variant starts
    from, its ONNX export (None for PyTorch runtimes), the eval inputs and the data (calibration rows)."""

    run: Any                          # pipeline.Run
    recipe: Any                       # recipe.Recipe
    model: str                        # 'teacher' or a torch stage's name
    bundle: Any                       # that model (models.Bundle)
    model_key: str                    # its cache key
    export_dir: Path | None           # its ONNX export's folder
    export_manifest: dict | None      # and manifest
    inputs: Any                       # checks.evaluate.EvalInputs of the eval split
    dataset: Any                      # data.Dataset (the planner judges plans on its calibration rows)
    folder: Path                      # variants/<name>/

    @property
    def threads(self) -> int:
        return self.run.threads


def graph_artifact(variant, ctx: VariantContext, manifest: dict, int8: dict) -> Artifact:
    """The artifact of an ONNX variant: its own towers' graphs from its folder, every other tower the fp32
    export's."""
    towers, shas, precision = {}, {}, {}
    for t in ctx.bundle.towers:
        own = owns(variant, t)
        towers[t] = (ctx.folder if own else ctx.export_dir) / TOWER_FILES[t]
        entry = (manifest if own else ctx.export_manifest)["files"][TOWER_FILES[t]]
        shas[t] = entry["sha256"]
        if own and entry.get("inference_precision", "fp32") != "fp32":  # a plan that runs the graph at bf16
            precision[t] = entry["inference_precision"]
    return Artifact(name=variant.name, variant=variant, model=ctx.model, towers=towers, sha256=shas,
                    manifest=manifest, graphs=dict(towers), int8=int8, precision=precision)


def variant_config(variant, **extra) -> dict:
    """The variant as what it makes depends on it, for its stage's cache key: its config without the budgets
    (judged later) and the runtime (the same graphs on any runtime), plus `extra` (int8 settings, ...)."""
    return {**variant.model_dump(exclude={"budgets", "runtime"}), **extra}


Handler = Callable[[Any, VariantContext], Artifact]


def handlers() -> dict[tuple[str, type], Handler]:
    """(what the runtime runs, variant config class) -> handler. Imported on first use (the handlers pull in
    onnxruntime's quantizer and torch)."""
    from mmcompress.export import planner, quantize_onnx, torch_cast
    from mmcompress.recipe import AutoVariant, Bf16Variant, DynamicVariant, Fp16Variant, Fp32Variant, StaticVariant

    return {("onnx", Fp32Variant): quantize_onnx.handle, ("onnx", DynamicVariant): quantize_onnx.handle,
            ("onnx", StaticVariant): quantize_onnx.handle, ("onnx", Fp16Variant): quantize_onnx.handle,
            ("onnx", AutoVariant): planner.handle, ("onnx", Bf16Variant): quantize_onnx.handle_bf16,
            ("torch", Fp32Variant): torch_cast.handle, ("torch", Fp16Variant): torch_cast.handle,
            ("torch", Bf16Variant): torch_cast.handle}


def make(variant, ctx: VariantContext) -> Artifact:
    """The variant made by its handler, then prepared by its runtime (runtimes.Runtime.prepare)."""
    from mmcompress import runtimes

    runtime = runtimes.get(variant.runtime)
    handler = handlers().get((runtime.runs, type(variant)))
    if handler is None:  # the schema refuses these pairs first (Runtime.refuses); a new runtime may not
        raise KeyError(f"no handler makes a {type(variant).__name__} for a runtime that runs {runtime.runs}")
    return runtime.prepare(handler(variant, ctx), ctx)
