"""`teacher: {python: package.module:function}`: the user's own code builds the Bundle.

The contract (docs/teachers.md): function() -> mmcompress.models.bundle.Bundle with
  towers   {'image': nn.Module, 'text': nn.Module} (one or both), or {'audio': ..., 'text': ...} / {'audio': ...},
           each mapping its inputs to an (N, D) embedding;
           or {'fusion': nn.Module} taking pixel_values, input_ids, attention_mask and returning the task head's
           logits, with task='vqa' or 'classification' and outputs=[the classes in logit order] declared, or
           task='itm' (a match score) (docs/fusion.md)
  specs    {tower: TowerSpec(inputs={name: {axis: axis name}})}: input names in forward() order, dynamic axes
  image_preprocess / audio_preprocess (AudioPreprocess around a transformers feature extractor) / text_preprocess
  for the towers present.
The module is imported only because the recipe names it; the report records it. `validate` and `run` both call
the function before anything runs (preflight), so the data is checked against the Bundle it returns; the run
reuses that Bundle.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from torch import nn

from mmcompress.artifact import sha256_file
from mmcompress.errors import MMCompressError, RecipeError, StageError
from mmcompress.models.bundle import AudioPreprocess, Bundle, ImagePreprocess, TextPreprocess, TowerSpec


def _import(ref: str, base: Path, where: str = "teacher.python"):
    module_name, func_name = ref.split(":")
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RecipeError(f"{where}: cannot import {module_name} ({e}); put the module beside the recipe "
                          f"({base}) or install its package") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise RecipeError(f"{where}: {module_name} has no function {func_name!r}")
    return module, func


def check(ref: str, base: Path, where: str = "teacher.python") -> None:
    """validate: the module imports and the function exists (importing runs the module's top level)."""
    _import(ref, base, where)


def load(cfg, base: Path, where: str = "teacher.python") -> Bundle:
    """The user's function called once per recipe: preflight builds the Bundle (so validate checks the data
    against its towers, head and tokenizer) and keeps it on cfg; the run's load returns that one."""
    if getattr(cfg, "_bundle", None) is not None:
        return cfg._bundle
    module, func = _import(cfg.python, base, where)
    try:
        bundle = func()
    except MMCompressError:
        raise
    except Exception as e:  # the user's code failed: where in it is what they need (no traceback block: cli.md)
        import traceback

        frames = traceback.extract_tb(e.__traceback__)[1:][-6:]  # from their function down, the last six
        at = "\n".join(f"  at {f.filename}:{f.lineno} in {f.name}: {(f.line or '').strip()}" for f in frames)
        raise StageError(f"{where}: {cfg.python}() raised {type(e).__name__}: {e}\n{at}") from None
    where = f"{where}: {cfg.python}()"
    if not isinstance(bundle, Bundle):
        raise RecipeError(f"{where} returned {type(bundle).__name__}; it must return mmcompress.models.bundle.Bundle "
                          f"(see docs/teachers.md)")
    fusion = set(bundle.towers) == {"fusion"}
    if not bundle.towers or (set(bundle.towers) - {"image", "text", "audio"} and not fusion) or \
            {"image", "audio"} <= set(bundle.towers):
        raise RecipeError(f"{where}: towers must be 'image' and/or 'text', or 'audio' and/or 'text' (encoders), or "
                          f"'fusion' alone (one module taking pixel_values, input_ids, attention_mask), got "
                          f"{sorted(bundle.towers)}")
    if fusion:
        if bundle.task not in Bundle.FUSION_TASKS:
            raise RecipeError(f"{where}: a fusion tower needs its task declared: Bundle(..., task='vqa') "
                              f"(one of {', '.join(Bundle.FUSION_TASKS)}); got task={bundle.task!r}")
        if bundle.task != "itm" and not (isinstance(bundle.outputs, list) and len(bundle.outputs) >= 2
                                         and all(isinstance(a, str) for a in bundle.outputs)):
            raise RecipeError(f"{where}: a fusion tower needs outputs=[...]: the head's answers as strings, in "
                              f"logit order (at least two)")
        if bundle.outputs and len(set(bundle.outputs)) != len(bundle.outputs):
            raise RecipeError(f"{where}: outputs names an answer twice; each logit needs its own answer")
    for tower, module_ in bundle.towers.items():
        if not isinstance(module_, nn.Module):
            raise RecipeError(f"{where}: towers['{tower}'] is a {type(module_).__name__}, not a torch.nn.Module")
        if not isinstance(bundle.specs.get(tower), TowerSpec):
            raise RecipeError(f"{where}: specs['{tower}'] must be a TowerSpec naming the inputs and dynamic axes")
    if ("image" in bundle.towers or fusion) and not isinstance(bundle.image_preprocess, ImagePreprocess):
        raise RecipeError(f"{where}: an image tower needs image_preprocess=ImagePreprocess(size, mean, std)")
    if "audio" in bundle.towers and not isinstance(bundle.audio_preprocess, AudioPreprocess):
        raise RecipeError(f"{where}: an audio tower needs audio_preprocess=mmcompress.models.audio_preprocess."
                          f"for_extractor(<its transformers feature extractor>)")
    if ("text" in bundle.towers or fusion) and not isinstance(bundle.text_preprocess, TextPreprocess):
        raise RecipeError(f"{where}: a text tower needs text_preprocess=TextPreprocess(tokenizer, max_length)")
    if cfg.text_padding and bundle.text_preprocess is not None:
        bundle.text_preprocess.padding = cfg.text_padding
    for m in bundle.towers.values():
        m.eval()
    if not fusion:
        bundle.task = Bundle.task_for(bundle.towers)
    file = getattr(module, "__file__", None)
    bundle.source = {"kind": "python", "entrypoint": cfg.python, "file": file,
                     # the code is part of the teacher's identity: a changed forward() must not reuse old outputs
                     "file_sha256": sha256_file(Path(file)) if file else None,
                     "note": "imported because the recipe names it", **bundle.source}
    try:
        cfg._bundle = bundle
    except (AttributeError, ValueError):  # a cfg that is not a recipe.TeacherConfig: nothing to keep it on
        pass
    return bundle
