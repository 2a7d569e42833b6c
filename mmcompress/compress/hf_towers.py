"""The Hugging Face model inside a tower: finding it, wrapping another one the same way, and the files that go
with it when a stage saves a student (tokenizer, image processor, a sentence-transformers layout).

Towers of Hugging Face and zoo teachers (models/clip.py, models/hf.py) are thin wrappers (pooling,
normalisation) around one transformers model that a dual encoder's towers share; the torch-side stages change
that model and wrap it again.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from torch import nn

from mmcompress.models.bundle import Bundle


def hf_model(tower: nn.Module) -> nn.Module | None:
    """The Hugging Face model inside a teacher tower, if any."""
    m = getattr(tower, "model", None)
    return m if m is not None and hasattr(m, "config") and hasattr(m, "save_pretrained") else None


def rewrap(tower: nn.Module, model: nn.Module) -> nn.Module:
    """The same tower wrapper around another model (pooling and normalisation kept)."""
    if hasattr(tower, "pooling"):
        return type(tower)(model, tower.pooling, tower.normalize)
    if hasattr(tower, "model_takes_mask"):  # models/audio.MeanPooledAudioTower (wav2vec2)
        return type(tower)(model, tower.normalize, tower.model_takes_mask)
    if hasattr(tower, "normalize"):  # models/audio.PooledAudioTower
        return type(tower)(model, tower.normalize)
    return type(tower)(model)


def rewrapped(bundle: Bundle, old: nn.Module, new: nn.Module) -> Bundle:
    """The bundle with every tower that wraps `old` (or is `old`) wrapping `new` instead."""
    towers = {}
    for t, m in bundle.towers.items():
        if hf_model(m) is old:
            towers[t] = rewrap(m, new)
        elif m is old:
            towers[t] = new
        else:
            towers[t] = m
    return replace(bundle, towers=towers)


def student_bundle(bundle: Bundle, student, name: str, folder: Path, saved: str) -> Bundle:
    """The teacher's bundle with the distilled (or pruned) towers swapped for the student's; `saved`: the
    stage folder's sub-folder holding the model."""
    towers = {t: (student.towers[t] if t in student.towers else m).eval() for t, m in bundle.towers.items()}
    return replace(bundle, towers=towers,
                   source={"kind": "stage", "stage": name, "path": str(folder / saved),
                           "parent": bundle.source.get("stage", "teacher"),
                           "hf_dir": str(hf_dir(bundle)) if hf_dir(bundle) else None,
                           "built_as": bundle.source.get("built_as", bundle.source.get("kind"))})


def builder(bundle: Bundle):
    """How to build an untrained model of the bundle's class (the zoo teacher's adds its conv stem; a stage's
    model was built like the model it came from); None: transformers' own classes."""
    if bundle.source.get("built_as", bundle.source.get("kind")) == "zoo":
        from mmcompress.models import shapes_clip, sounds_clap

        models = [m for m in map(hf_model, bundle.towers.values()) if m is not None]
        if models and isinstance(models[0], sounds_clap.SoundsClap):
            return sounds_clap.SoundsClap
        return shapes_clip.from_config
    return None


def hf_dir(bundle: Bundle) -> Path | None:
    """The Hugging Face directory the model came from (through any earlier stages), if it came from one."""
    d = bundle.source.get("hf_dir") or (bundle.source.get("path") if bundle.source.get("kind") == "hf" else None)
    return Path(d) if d else None


def save_preprocessing(bundle: Bundle, out: Path) -> None:
    """Write the bundle's tokenizer and copy its image processor config into `out`, so a saved student loads
    with the teacher's preprocessing (transformers' AutoProcessor, or teacher.hf: out)."""
    if bundle.text_preprocess is not None and hasattr(bundle.text_preprocess, "tokenizer"):
        bundle.text_preprocess.tokenizer.save_pretrained(out)
    src = hf_dir(bundle)
    if src is not None and (src / "preprocessor_config.json").is_file():
        (out / "preprocessor_config.json").write_bytes((src / "preprocessor_config.json").read_bytes())


def st_layout(src: Path, out: Path) -> str:
    """A sentence-transformers teacher: copy its module files (modules.json, pooling, normalize, configs) into
    out, so the student loads like the teacher (sentence-transformers, or teacher.hf: student), and return the
    transformer's sub-folder ('' when it lives at the top). Any other teacher: ''."""
    modules_file = src / "modules.json"
    if not modules_file.is_file():
        return ""
    modules = json.loads(modules_file.read_text())
    transformer = next((m.get("path", "") for m in modules if m.get("type", "").endswith("Transformer")), "")
    for m in modules:
        p = m.get("path", "")
        if p and p != transformer and (src / p).is_dir():
            shutil.copytree(src / p, out / p, dirs_exist_ok=True)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        if (src / name).is_file():
            (out / name).write_bytes((src / name).read_bytes())
    return transformer
