"""Teachers by kind -> Bundle. Each loader takes the recipe's teacher config; new kinds (hf directories,
python entrypoints) register here next to `zoo`."""
from __future__ import annotations

from typing import Callable

from mmcompress.models.bundle import Bundle, ImagePreprocess, TextPreprocess


def _load_zoo(cfg, progress: Callable | None) -> Bundle:
    from mmcompress.models import clip, shapes_clip, zoo

    entry = zoo.REGISTRY[cfg.zoo]
    trained_now = not zoo.is_built(entry)
    path = zoo.build(cfg.zoo, progress)
    model, tokenizer, mcfg = shapes_clip.load(path)
    towers, specs = clip.split_towers(model)
    return Bundle(towers=towers, specs=specs,
                  image_preprocess=ImagePreprocess(mcfg.image_size, shapes_clip.CLIP_MEAN, shapes_clip.CLIP_STD),
                  text_preprocess=TextPreprocess(tokenizer, mcfg.max_length),
                  source={"kind": "zoo", "name": cfg.zoo, "path": str(path), "cache_key": zoo.cache_key(entry),
                          "trained_now": trained_now})


LOADERS = {"zoo": _load_zoo}


def teacher_kind(cfg) -> str:
    return next(k for k in LOADERS if getattr(cfg, k, None) is not None)


def load_teacher(cfg, progress: Callable | None = None) -> Bundle:
    """cfg: recipe.TeacherConfig. progress(step, total, loss) is called while a zoo teacher trains."""
    return LOADERS[teacher_kind(cfg)](cfg, progress)
