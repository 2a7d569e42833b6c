"""Built-in teachers, registered by name like timm's models. A zoo teacher is cached in the user cache dir under
a key made of its config and training-code version. On first use it comes from the copy the package ships
(mmcompress/models/shipped/<name>, made by `mmcompress zoo build NAME --force --ship`) when that copy was
trained from the same key, else it is trained there and then; a config change therefore retrains it."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from mmcompress.artifact import stable_hash
from mmcompress.models import shapes_clip, shapes_vqa, sounds_clap


@dataclass(frozen=True)
class ZooEntry:
    name: str
    description: str
    config: Any  # shapes_clip.ShapesClipConfig | shapes_vqa.ShapesVqaConfig | sounds_clap.SoundsClapConfig
    towers: tuple[str, ...] = ("image", "text")  # known before training: recipes are checked against it

    @property
    def max_length(self) -> int:
        """Text positions of the teacher (a fusion teacher's are its base teacher's)."""
        c = self.config
        return REGISTRY[c.base].config.max_length if isinstance(c, shapes_vqa.ShapesVqaConfig) else c.max_length

    @property
    def code(self):
        """The module that trains, saves and loads this teacher."""
        return {shapes_vqa.ShapesVqaConfig: shapes_vqa, sounds_clap.SoundsClapConfig: sounds_clap}.get(
            type(self.config), shapes_clip)


REGISTRY: dict[str, ZooEntry] = {}
SHIPPED = Path(__file__).resolve().parent / "shipped"


def register(entry: ZooEntry) -> None:
    REGISTRY[entry.name] = entry


register(ZooEntry("shapes-clip", "CLIP-style dual encoder (conv stem, 4+4 layers, hidden 192, 3.7 M params) "
                                 "trained contrastively on procedural shapes; shipped trained (retrain: zoo build --force, "
                                 "3-6 min on 2 cores)",
                  shapes_clip.ShapesClipConfig()))
register(ZooEntry("shapes-clip-tiny", "The same recipe at test size (hidden 64, 2+2 layers, 60 steps); "
                                      "seconds to train; for tests and smoke runs",
                  shapes_clip.ShapesClipConfig(hidden=64, layers=2, heads=2, intermediate=128, projection=32,
                                               steps=60, batch=32, lr=2e-3, train_images=2000)))


register(ZooEntry("shapes-vqa", "Fusion teacher for questions about the shapes images (what colour / what shape / "
                                "is it small): shapes-clip's encoders + 2 cross-attention fusion layers + an "
                                "answer head over 13 answers; trained on first use (about 1-2 min on 2 cores)",
                  shapes_vqa.ShapesVqaConfig(), towers=("fusion",)))
register(ZooEntry("shapes-vqa-tiny", "The same on shapes-clip-tiny's encoders (1 fusion layer, 40 steps); for tests",
                  shapes_vqa.ShapesVqaConfig(fusion_layers=1, fusion_heads=2, fusion_intermediate=128, steps=40,
                                             batch=32, train_images=1000, base="shapes-clip-tiny"),
                  towers=("fusion",)))


register(ZooEntry("sounds-clap", "CLAP-style audio-text dual encoder (AST audio tower 3 layers, CLIP text tower 2 "
                                 "layers, hidden 128) trained contrastively on procedural sounds (data.source "
                                 "sounds); trained on first use (about 2 min on 2 idle cores: docs/audio.md)",
                  sounds_clap.SoundsClapConfig(), towers=("audio", "text")))
register(ZooEntry("sounds-clap-tiny", "The same recipe at test size (hidden 32, 1+1 layers, 20 steps on 200 clips); "
                                      "seconds to train; for tests",
                  sounds_clap.SoundsClapConfig(hidden=32, audio_layers=1, text_layers=1, heads=2, intermediate=64,
                                               projection=16, steps=20, batch=16, train_clips=200),
                  towers=("audio", "text")))


def cache_root() -> Path:
    env = os.environ.get("MMCOMPRESS_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("mmcompress"))


def cache_key(entry: ZooEntry) -> str:
    key = {"name": entry.name, "config": asdict(entry.config), "code": entry.code.CODE_VERSION}
    if entry.code is shapes_vqa:  # trained on top of another zoo teacher: retrained when that one changes
        key["base"] = cache_key(REGISTRY[entry.config.base])
    return stable_hash(key)[:16]


def cache_dir(entry: ZooEntry) -> Path:
    return cache_root() / "zoo" / f"{entry.name}-{cache_key(entry)}"


def _complete(d: Path) -> bool:
    return (d / "mmcompress_zoo.json").is_file() and (d / "model.safetensors").is_file()


def is_built(entry: ZooEntry) -> bool:
    return _complete(cache_dir(entry))


def shipped_dir(entry: ZooEntry) -> Path:
    """Where the package ships a trained copy of a zoo teacher (mmcompress/models/shipped/<name>)."""
    return SHIPPED / entry.name


def shipped_matches(entry: ZooEntry) -> bool:
    """A shipped copy exists and was trained from exactly this config and training code (its cache key)."""
    meta = shipped_dir(entry) / "mmcompress_zoo.json"
    try:
        return json.loads(meta.read_text()).get("cache_key") == cache_key(entry)
    except (OSError, ValueError):
        return False


def _install(out: Path, fill: Callable[[Path], None], force: bool) -> None:
    """Write a teacher directory with fill(tmp) beside `out`, then rename it into place (atomic). A complete
    copy another process installed meanwhile (two runs, or torchrun ranks, building at once) is kept unless
    force."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        fill(tmp)
        if not force and _complete(out):
            return  # finished by someone else first: theirs is the same build
        if out.exists():
            shutil.rmtree(out)  # replaced on --force; otherwise an incomplete copy left by something else
        try:
            os.replace(tmp, out)
        except OSError:
            if not _complete(out):  # another process finished the same build first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def build(name: str, progress: Callable[[int, int, float], None] | None = None, force: bool = False) -> Path:
    """The named teacher's directory in the cache: already there; else the copy the package ships (when it was
    trained from this exact config); else trained now. force: train now, replacing any cached copy."""
    entry = REGISTRY[name]
    out = cache_dir(entry)
    if is_built(entry) and not force:
        return out
    if not force and shipped_matches(entry):
        _install(out, lambda tmp: shutil.copytree(shipped_dir(entry), tmp, dirs_exist_ok=True), force=False)
        return out
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's shard bar would break into our progress output
    threads = torch.get_num_threads()
    if entry.code is shapes_vqa:
        base = build(entry.config.base, progress)
        t0 = time.perf_counter()
        model, tokenizer, log = shapes_vqa.train(entry.config, base, progress)
        save = lambda tmp, extra: shapes_vqa.save(model, tokenizer, entry.config, shapes_vqa.base_config(base), tmp, extra)
    else:
        t0 = time.perf_counter()
        model, tokenizer, log = entry.code.train(entry.config, progress)
        save = lambda tmp, extra: entry.code.save(model, tokenizer, entry.config, tmp, extra)
    seconds = round(time.perf_counter() - t0, 1)
    _install(out, lambda tmp: save(tmp, {"cache_key": cache_key(entry), "origin": "trained", "train_seconds": seconds,
                                         "threads": threads, "log": log}), force=force)
    return out


def ship(name: str, facts: dict) -> Path:
    """Copy the cached, trained teacher into the package (weights stored as fp16: half the size) so that a fresh
    install skips training; facts (the command, the machine) are recorded beside it. Returns the shipped folder."""
    import torch
    from safetensors.torch import load_file, save_file

    entry = REGISTRY[name]
    src, dst = cache_dir(entry), shipped_dir(entry)
    meta = json.loads((src / "mmcompress_zoo.json").read_text()) if is_built(entry) else {}
    if not meta or meta.get("origin") == "shipped":  # the cache folder's name carries the current key
        raise RuntimeError(f"{src} holds no teacher trained here from the current config; run `mmcompress zoo "
                           f"build {name} --force` first")
    meta["cache_key"] = cache_key(entry)
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = {k: v.to(torch.float16) if v.is_floating_point() else v
               for k, v in load_file(src / "model.safetensors").items()}
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    meta.update(origin="shipped", weights_dtype="float16", shipped=facts)
    (dst / "mmcompress_zoo.json").write_text(json.dumps(meta, indent=2) + "\n")
    dst.chmod(0o755)  # copied from a mkdtemp folder (0700): make the package files readable by everyone
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst
