"""Built-in teachers, registered by name like timm's models. A zoo teacher is trained on first use and cached
in the user cache dir under a key made of its config and code version, so a config change retrains it."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from mmcompress.artifact import stable_hash
from mmcompress.models import shapes_clip


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    config: shapes_clip.ShapesClipConfig
    towers: tuple[str, ...] = ("image", "text")  # known before training: recipes are checked against it


REGISTRY: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> None:
    REGISTRY[entry.name] = entry


register(ZooEntry("shapes-clip", "CLIP-style dual encoder (conv stem, 4+4 layers, hidden 192, 3.7 M params) "
                                 "trained contrastively on procedural shapes; ~4 min on 2 cores on first use",
                  shapes_clip.ShapesClipConfig()))
register(ZooEntry("shapes-clip-tiny", "The same recipe at test size (hidden 64, 2+2 layers, 60 steps); "
                                      "seconds to train; for tests and smoke runs",
                  shapes_clip.ShapesClipConfig(hidden=64, layers=2, heads=2, intermediate=128, projection=32,
                                               steps=60, batch=32, lr=2e-3, train_images=2000)))


def cache_root() -> Path:
    env = os.environ.get("MMCOMPRESS_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mmcompress"))


def cache_key(entry: ZooEntry) -> str:
    return stable_hash({"name": entry.name, "config": asdict(entry.config), "code": shapes_clip.CODE_VERSION})[:16]


def cache_dir(entry: ZooEntry) -> Path:
    return cache_root() / "zoo" / f"{entry.name}-{cache_key(entry)}"


def is_built(entry: ZooEntry) -> bool:
    d = cache_dir(entry)
    return (d / "mmcompress_zoo.json").is_file() and (d / "model.safetensors").is_file()


def build(name: str, progress: Callable[[int, int, float], None] | None = None, force: bool = False) -> Path:
    """Train (or reuse) the named teacher; returns its directory. Written to a temp dir, then renamed."""
    entry = REGISTRY[name]
    out = cache_dir(entry)
    if is_built(entry) and not force:
        return out
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's shard bar would break into our progress output
    out.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    model, tokenizer, log = shapes_clip.train(entry.config, progress)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        shapes_clip.save(model, tokenizer, entry.config, tmp, {"train_seconds": round(time.perf_counter() - t0, 1),
                                                               "threads": threads, "log": log})
        if out.exists() and (force or not is_built(entry)):
            shutil.rmtree(out)  # replaced on --force; otherwise an incomplete copy left by something else
        try:
            os.replace(tmp, out)
        except OSError:
            if not is_built(entry):  # another process finished the same build first: use theirs
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out
