"""Everything a run needs that the schema cannot see: installed backends, the teacher's files or module,
the data files (every line parsed, every image header read). `mmcompress validate` and `mmcompress run`
both call it before any stage runs."""
from __future__ import annotations

import importlib.util

from mmcompress.errors import BackendMissing
from mmcompress.recipe import Recipe

# import name -> (pip name, what needs it)
CORE = {"torch": ("torch", "the teacher"), "transformers": ("transformers", "the teacher's towers"),
        "onnx": ("onnx", "export.onnx"), "onnxruntime": ("onnxruntime", "export.variants and checks")}


def needed(recipe: Recipe) -> dict[str, tuple[str, str]]:
    need = dict(CORE)
    if recipe.export.onnx.exporter == "dynamo":
        need["onnxscript"] = ("onnxscript", "export.onnx.exporter: dynamo")
    return need


def available() -> dict[str, bool]:
    names = {**CORE, "onnxscript": None, "sklearn": None, "tensorrt": None}
    return {n: importlib.util.find_spec(n) is not None for n in names}


def check(recipe: Recipe, recipe_path: str = "recipe") -> None:
    missing = [(mod, pip, why) for mod, (pip, why) in needed(recipe).items() if importlib.util.find_spec(mod) is None]
    if missing:
        lines = [f"{recipe_path}: backend '{mod}' is not installed (needed by {why}); install it: pip install {pip}"
                 for mod, pip, why in missing]
        raise BackendMissing("\n".join(lines))
    if recipe.teacher.hf is not None:
        from mmcompress.models import hf

        hf.resolve(recipe.teacher.hf, recipe.base, recipe.where("teacher", "hf"))
    if recipe.teacher.python is not None:
        from mmcompress.models import entrypoint

        entrypoint.check(recipe.teacher.python, recipe.base, recipe.where("teacher", "python"))
    from mmcompress.data import check_data

    check_data(recipe.data, recipe.base)
