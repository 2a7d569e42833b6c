"""Teachers by kind (zoo | hf | python) -> Bundle."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from mmcompress.models.bundle import FUSION_SPEC, Bundle, ImagePreprocess, TextPreprocess


def _load_zoo(cfg, base: Path, progress: Callable | None) -> Bundle:
    from mmcompress.models import clip, shapes_clip, shapes_vqa, sounds_clap, zoo

    entry = zoo.REGISTRY[cfg.zoo]
    trained_now = not zoo.is_built(entry) and not zoo.shipped_matches(entry)
    path = zoo.build(cfg.zoo, progress)
    origin = json.loads((path / "mmcompress_zoo.json").read_text()).get("origin", "trained")
    source = {"kind": "zoo", "name": cfg.zoo, "path": str(path), "cache_key": zoo.cache_key(entry),
              "origin": origin, "trained_now": trained_now}
    if entry.code is shapes_vqa:
        model, tokenizer, base_cfg, answers = shapes_vqa.load(path)
        return Bundle(towers={"fusion": model}, specs={"fusion": FUSION_SPEC},
                      image_preprocess=ImagePreprocess(base_cfg.image_size, shapes_clip.CLIP_MEAN, shapes_clip.CLIP_STD),
                      text_preprocess=TextPreprocess(tokenizer, cfg.max_length or base_cfg.max_length,
                                                     cfg.text_padding or "longest"),
                      task="vqa", outputs=list(answers), source=source)
    if entry.code is sounds_clap:  # audio and text towers; the feature extractor saved beside the weights
        from mmcompress.models.audio_preprocess import for_extractor

        model, tokenizer, extractor, mcfg = sounds_clap.load(path)
        towers, specs = sounds_clap.towers(model)
        if cfg.towers:
            towers = {t: m for t, m in towers.items() if t in cfg.towers}
        return Bundle(towers=towers, specs=specs, image_preprocess=None, audio_preprocess=for_extractor(extractor),
                      text_preprocess=TextPreprocess(tokenizer, cfg.max_length or mcfg.max_length,
                                                     cfg.text_padding or "longest"),
                      task=Bundle.task_for(towers), source=source)
    model, tokenizer, mcfg = shapes_clip.load(path)
    towers, specs = clip.split_towers(model)
    if cfg.towers:
        towers = {t: m for t, m in towers.items() if t in cfg.towers}
    return Bundle(towers=towers, specs=specs,
                  image_preprocess=ImagePreprocess(mcfg.image_size, shapes_clip.CLIP_MEAN, shapes_clip.CLIP_STD),
                  text_preprocess=TextPreprocess(tokenizer, cfg.max_length or mcfg.max_length,
                                                 cfg.text_padding or "longest"),
                  task=Bundle.task_for(towers), source=source)


def _load_hf(cfg, base: Path, progress: Callable | None) -> Bundle:
    from mmcompress.models import hf

    return hf.load(cfg, base)


def _load_python(cfg, base: Path, progress: Callable | None) -> Bundle:
    from mmcompress.models import entrypoint

    return entrypoint.load(cfg, base)


LOADERS = {"zoo": _load_zoo, "hf": _load_hf, "python": _load_python}


def weights_hash(bundle: Bundle) -> str:
    """sha256 over every parameter and buffer of the towers (shared modules counted once): the teacher's
    identity in cache keys."""
    import torch

    h = hashlib.sha256()
    seen = set()
    for tower in sorted(bundle.towers):
        for name, t in list(bundle.towers[tower].state_dict(keep_vars=True).items()):
            if id(t) in seen:
                continue
            seen.add(id(t))
            h.update(f"{tower}.{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_teacher(cfg, base: Path | str = ".", progress: Callable | None = None) -> Bundle:
    """cfg: recipe.TeacherConfig; relative paths against `base` (the recipe's folder). progress(step, total,
    loss) is called while a zoo teacher trains."""
    bundle = LOADERS[cfg.kind](cfg, Path(base), progress)
    # identity by content: a zoo teacher rebuilt with `zoo build --force` (or an edited HF directory) gets new
    # teacher outputs and exports, even though its name and config are the same
    bundle.source["weights_sha256"] = weights_hash(bundle)
    bundle.source.setdefault("cache_key", bundle.source["weights_sha256"])
    return bundle
