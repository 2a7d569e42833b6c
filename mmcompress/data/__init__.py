"""Data sources by name -> Dataset with train / calibration / eval splits that never overlap."""
from __future__ import annotations

import numpy as np

from mmcompress.data.base import Dataset, Split
from mmcompress.errors import RecipeError

SPLIT_ORDER = ["eval", "calibration", "train"]  # eval first: its content does not change when others grow


def _shapes(cfg, seed: int) -> Dataset:
    from mmcompress.data import shapes

    sizes = cfg.splits.model_dump()
    # one generator seed per split: distinct streams, and a split's content depends only on (seed, its size)
    splits = {name: shapes.generate(sizes[name], seed=seed * 100 + k) for k, name in enumerate(SPLIT_ORDER)}
    return Dataset("shapes", splits, shapes.class_names(), shapes.class_prompts(cfg.prompts.templates),
                   {"templates": cfg.prompts.templates or shapes.TEMPLATES})


def _digits(cfg, seed: int) -> Dataset:
    from mmcompress.data import digits

    full = digits.load_all()
    sizes = cfg.splits.model_dump()
    need = sum(sizes.values())
    if need > len(full):
        raise RecipeError(f"data.splits: digits has {len(full)} images but the splits ask for {need} "
                          f"({sizes}); make them smaller")
    order = np.random.default_rng(seed).permutation(len(full))
    splits, start = {}, 0
    for name in SPLIT_ORDER:
        idx = order[start:start + sizes[name]]
        splits[name] = Split(full.images[idx], [full.texts[i] for i in idx], full.labels[idx])
        start += sizes[name]
    return Dataset("digits", splits, digits.NAMES, digits.class_prompts(cfg.prompts.templates),
                   {"templates": cfg.prompts.templates or digits.TEMPLATES})


SOURCES = {"shapes": _shapes, "digits": _digits}


def load_data(cfg, seed: int) -> Dataset:
    """cfg: recipe.DataConfig."""
    return SOURCES[cfg.source](cfg, seed)
