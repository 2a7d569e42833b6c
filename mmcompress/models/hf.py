"""Hugging Face model directories -> Bundle, offline.

CLIP-like models (anything with get_image_features and get_text_features: CLIP, SigLIP, ...) become an image
and a text tower; CLAP an audio and a text tower, AST an audio tower (models/audio.py); ViT-family models an image tower; BERT-family models a text tower, pooled as the
sentence-transformers config says when the directory has one (modules.json, 1_Pooling/config.json).
Preprocessing comes from the directory's preprocessor_config.json and tokenizer files.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from mmcompress.artifact import stable_hash
from mmcompress.errors import RecipeError
from mmcompress.models.bundle import Bundle, ImagePreprocess, TextPreprocess
from mmcompress.models.clip import IMAGE_SPEC, TEXT_SPEC, split_towers

MAX_TEXT_LENGTH = 512
# text models trained on inputs padded to a fixed length that read a fixed position: padding to the longest
# row would change their output (SigLIP's text tower pools the last token)
FIXED_LENGTH_TEXT = {"siglip", "siglip2"}


def resolve(ref: str, base: Path, where: str = "teacher.hf") -> Path:
    """A directory (relative to the recipe) or a hub id already in the local Hugging Face cache.
    where: how errors name the recipe key ('recipe.yaml:4 teacher.hf')."""
    path = (base / ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise RecipeError(f"{where}: {path} has no config.json; point it at a directory written by "
                              f"save_pretrained (or a sentence-transformers model directory)")
        return path
    try:
        from huggingface_hub import snapshot_download

        # cache_dir read now, not at huggingface_hub's import, so HF_HUB_CACHE set by the caller counts
        return Path(snapshot_download(ref, local_files_only=True, cache_dir=os.environ.get("HF_HUB_CACHE")))
    except Exception:
        raise RecipeError(
            f"{where}: '{ref}' is not a directory (looked for {path}) and not in the local Hugging Face cache; "
            f"mmcompress downloads nothing at run time. On a machine with access run `huggingface-cli download "
            f"{ref} --local-dir DIR` (or `model.save_pretrained(DIR)` with its tokenizer/processor), bring DIR "
            f"here and set teacher.hf: DIR") from None


def _st_config(path: Path) -> tuple[Path, dict]:
    """sentence-transformers layout -> (transformer dir, {'pooling', 'normalize', 'max_length'}) or (path, {})."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return path, {}
    out: dict = {}
    model_dir = path
    for m in json.loads(modules_file.read_text()):
        kind = m.get("type", "").rsplit(".", 1)[-1]
        sub = path / m.get("path", "")
        if kind == "Transformer":
            model_dir = sub
            cfg = sub / "sentence_bert_config.json"
            cfg = cfg if cfg.is_file() else path / "sentence_bert_config.json"
            if cfg.is_file():
                out["max_length"] = json.loads(cfg.read_text()).get("max_seq_length")
        elif kind == "Pooling":
            pool = json.loads((sub / "config.json").read_text())
            modes = [k.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
                     for k, v in pool.items() if k.startswith("pooling_mode_") and v]
            if modes not in (["cls"], ["mean"]):
                raise RecipeError(f"{sub / 'config.json'}: pooling {modes} is not supported; mmcompress follows "
                                  f"cls or mean pooling (set teacher.pooling to override)")
            out["pooling"] = modes[0]
        elif kind == "Normalize":
            out["normalize"] = True
        else:
            raise RecipeError(f"{modules_file}: module type {m.get('type')} is not supported (Transformer, Pooling, "
                              f"Normalize are)")
    return model_dir, out


class PooledTextTower(nn.Module):
    """input_ids, attention_mask (N, L) -> (N, D): cls / attention-masked mean / pooler, optionally L2-normalised."""

    def __init__(self, model: nn.Module, pooling: str, normalize: bool):
        super().__init__()
        self.model, self.pooling, self.normalize = model, pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        h = out.last_hidden_state  # (N, L, D)
        if self.pooling == "cls":
            e = h[:, 0]
        elif self.pooling == "pooler":
            e = out.pooler_output
        else:
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (N, L, 1)
            e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


class PooledImageTower(nn.Module):
    """pixel_values (N, 3, H, W) -> (N, D): CLS token, mean of the patch tokens, or the pooler output."""

    def __init__(self, model: nn.Module, pooling: str, normalize: bool):
        super().__init__()
        self.model, self.pooling, self.normalize = model, pooling, normalize

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=pixel_values)
        h = out.last_hidden_state  # (N, 1 + patches, D)
        e = {"cls": lambda: h[:, 0], "mean": lambda: h[:, 1:].mean(1), "pooler": lambda: out.pooler_output}[self.pooling]()
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


def image_preprocess(path: Path) -> ImagePreprocess:
    cfg_file = path / "preprocessor_config.json"
    if not cfg_file.is_file():
        raise RecipeError(f"teacher.hf: {path} has no preprocessor_config.json; save the image processor with the "
                          f"model (processor.save_pretrained(DIR))")
    c = json.loads(cfg_file.read_text())
    size, crop = c.get("size", 224), c.get("crop_size")
    as_int = lambda v: v if isinstance(v, int) else v.get("height", v.get("shortest_edge"))
    final = as_int(crop) if c.get("do_center_crop") and crop else (size if isinstance(size, int) else size.get("height", size.get("shortest_edge")))
    shortest = size.get("shortest_edge") if isinstance(size, dict) else None
    mean = c.get("image_mean", [0.5, 0.5, 0.5]) if c.get("do_normalize", True) else [0.0, 0.0, 0.0]
    std = c.get("image_std", [0.5, 0.5, 0.5]) if c.get("do_normalize", True) else [1.0, 1.0, 1.0]
    return ImagePreprocess(int(final), tuple(mean), tuple(std), shortest_edge=shortest, resample=int(c.get("resample", 3)))


def read_config(ref: str, base: Path, where: str = "teacher.hf"):
    """The model's transformers config from config.json alone (no weights), for checks before any stage."""
    from transformers import AutoConfig

    model_dir, _ = _st_config(resolve(ref, base, where))
    try:
        return AutoConfig.from_pretrained(model_dir)
    except Exception as e:
        raise RecipeError(f"{where}: {model_dir}/config.json cannot be read by transformers ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200]}); is it a save_pretrained directory?") from None


def refusal(config) -> str | None:
    """Why a model with this config cannot be a teacher although towers_of would give it towers, or None."""
    from mmcompress.models import audio, blip

    return blip.refusal(config) or audio.refusal(config)


def _safetensors_problem(path: Path) -> str | None:
    """What is wrong with a .safetensors file, from its header alone: 8 bytes of header length, the JSON header
    (each tensor's byte range), then exactly the bytes it describes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size < 8:
            return f"is truncated: it has {size} bytes, fewer than the 8 that give its header's length"
        n = int.from_bytes(f.read(8), "little")
        if 8 + n > size:
            return f"is truncated or corrupt: its first 8 bytes say a {n}-byte header follows, and the file has {size}"
        try:
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError):
            return "is corrupt: its header is not the JSON a safetensors file starts with"
    want = 8 + n + end
    if size < want:
        return f"is truncated: its header says the file has {want} bytes, and it has {size}"
    if size > want:
        return f"is corrupt: its header says the file has {want} bytes, and it has {size} (bytes after the tensors)"
    return None


def _torch_zip_problem(path: Path) -> str | None:
    """A torch.save file (zip) cut short loses its end, where the zip's directory is; a legacy pickle file has
    nothing to check short of reading it all."""
    import zipfile

    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return None
    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        return f"is truncated or corrupt: a torch.save file is a zip archive and this one does not read as one ({e})"
    return None


def check_weights(model_dir: Path, where: str = "teacher.hf") -> None:
    """The weight files from_pretrained reads are whole. A copy cut short (an interrupted download or scp, a full
    disk) otherwise fails deep inside safetensors or torch.load with a message that names no file. Reads only
    headers: cheap, so validate checks it too."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():  # sharded: the shards the index names
        try:
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError):
            raise RecipeError(f"{where}: {index} is not a safetensors index (JSON with a weight_map); copy it "
                              f"again, or save_pretrained the model again") from None
        files = [model_dir / n for n in names]
        for f in files:
            if not f.is_file():
                raise RecipeError(f"{where}: {f} is missing ({index.name} lists it); copy every shard of the model")
    else:
        files = sorted(model_dir.glob("model*.safetensors"))
    checks = [(f, _safetensors_problem) for f in files]
    if not files:  # from_pretrained falls back to torch.save files
        checks = [(f, _torch_zip_problem) for f in sorted(model_dir.glob("pytorch_model*.bin"))]
    for f, problem in checks:
        why = problem(f)
        if why:
            raise RecipeError(f"{where}: {f} {why}; copy the file again from where the model was saved (or "
                              f"save_pretrained the model again)")


def text_preprocess(path: Path, cfg, positions: int, where: str = "teacher.hf") -> TextPreprocess:
    """The directory's tokenizer, padded to teacher.max_length (default: the model's text positions, at most
    512)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # no tokenizer files, or ones transformers cannot read: a directory saved without it
        raise RecipeError(f"{where}: {path} has no tokenizer transformers can load ({type(e).__name__}: "
                          f"{str(e).splitlines()[0][:200] if str(e) else ''}); save it beside the model "
                          f"(tokenizer.save_pretrained(DIR))") from None
    return TextPreprocess(tokenizer, cfg.max_length or min(positions, MAX_TEXT_LENGTH), cfg.text_padding or "longest")


def head(cfg, base: Path, config, where: str = "teacher.hf") -> Bundle | None:
    """A fusion teacher's task, head outputs and tokenizer, read without its weights (a Bundle with no modules),
    so that validate checks the data's questions and answers against them; None for other models."""
    from mmcompress.models import blip, vilt

    if getattr(config, "model_type", None) == "vilt":
        read = vilt.head
    elif blip.is_itm(config):
        read = blip.head
    else:
        return None
    task, outputs, text_pre = read(resolve(cfg.hf, base, where), config, cfg, where)
    return Bundle(towers={"fusion": None}, specs={}, image_preprocess=None, text_preprocess=text_pre, task=task,
                  outputs=outputs)


def check_dir(ref: str, base: Path, where: str = "teacher.hf"):
    """What preflight checks in a teacher directory before any weights load: config.json, an architecture
    mmcompress runs, whole weight files. -> the config."""
    config = read_config(ref, base, where)
    path = resolve(ref, base, where)
    why = refusal(config)
    if why:
        raise RecipeError(f"{where}: {path} {why}")
    check_weights(_st_config(path)[0], where)
    return config


def towers_of(config) -> tuple[str, ...] | None:
    """The towers `load` will make from a model with this config: ('image', 'text'), ('text',), ('image',), or
    None when the config does not say (then the load decides)."""
    if getattr(config, "model_type", None) == "vilt":
        return ("fusion",)
    from mmcompress.models import audio, blip

    if audio.towers_of(config):
        return audio.towers_of(config)
    if blip.is_itm(config):
        return ("fusion",)
    if hasattr(config, "vision_config") and hasattr(config, "text_config"):
        return ("image", "text")
    if hasattr(config, "vocab_size") and not hasattr(config, "image_size"):
        return ("text",)
    if hasattr(config, "image_size"):
        return ("image",)
    return None


def text_positions(config) -> int | None:
    """How many text positions the model has (its longest possible input), if the config says."""
    n = getattr(getattr(config, "text_config", config), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def _max_length(cfg_max: int | None, st: dict, tokenizer, config) -> int:
    if cfg_max:
        return cfg_max
    candidates = [st.get("max_length"), getattr(tokenizer, "model_max_length", None),
                  getattr(getattr(config, "text_config", config), "max_position_embeddings", None)]
    for c in candidates:
        if c and c < 100_000:
            return min(int(c), MAX_TEXT_LENGTH)
    return MAX_TEXT_LENGTH


def load(cfg, base: Path, where: str = "teacher.hf") -> Bundle:
    """cfg: recipe.TeacherConfig with hf set."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = resolve(cfg.hf, base, where)
    model_dir, st = _st_config(path)
    check_weights(model_dir, where)  # preflight did too; a file changed since then fails here, not in safetensors
    config = AutoConfig.from_pretrained(model_dir)
    why = refusal(config)
    if why:
        raise RecipeError(f"{where}: {path} {why}")
    config._attn_implementation = "sdpa" if getattr(config, "_attn_implementation", None) is None else config._attn_implementation
    source = {"kind": "hf", "path": str(path), "model_type": config.model_type,
              "config_sha256": stable_hash(config.to_diff_dict())[:16]}  # with the weights hash: the identity
    if config.model_type == "vilt":  # a fusion model: image and question in one tower, an answer head
        from mmcompress.models import vilt

        source["architecture"] = (config.architectures or ["?"])[0]
        towers, specs, image_pre, text_pre, task, outputs = vilt.load(path, config, cfg, source)
        return Bundle(towers=towers, specs=specs, image_preprocess=image_pre, text_preprocess=text_pre, task=task,
                      outputs=outputs, source=source)
    from mmcompress.models import blip

    if blip.is_itm(config):  # cross-attention image-text matching: one tower, a 2-way match head
        source["architecture"] = "BlipForImageTextRetrieval"
        towers, specs, image_pre, text_pre, task, outputs = blip.load(path, config, cfg, source)
        return Bundle(towers=towers, specs=specs, image_preprocess=image_pre, text_preprocess=text_pre, task=task,
                      outputs=outputs, source=source)
    from mmcompress.models import audio

    audio_pre = None
    if audio.towers_of(config):
        audio.check_safetensors(model_dir, where)
        if config.model_type in audio.EAGER:  # transformers has no SDPA path for these
            config._attn_implementation = "eager"
    model = AutoModel.from_pretrained(model_dir, config=config, use_safetensors=audio.towers_of(config) is not None or None).eval()
    source["architecture"] = type(model).__name__
    if audio.towers_of(config):  # CLAP: audio + text towers; AST: an audio tower
        towers, specs, audio_pre = audio.split(model, config, path, where)
        image_pre = None
        text_pre = text_preprocess(path, cfg, MAX_TEXT_LENGTH, where) if "text" in towers else None
        if text_pre is not None:
            text_pre.max_length = _max_length(cfg.max_length, st, text_pre.tokenizer, config)
    elif hasattr(model, "get_image_features") and hasattr(model, "get_text_features"):
        towers, specs = split_towers(model)
        tokenizer = AutoTokenizer.from_pretrained(path)
        image_pre = image_preprocess(path)
        padding = cfg.text_padding or ("max_length" if config.model_type in FIXED_LENGTH_TEXT else "longest")
        text_pre = TextPreprocess(tokenizer, _max_length(cfg.max_length, st, tokenizer, config), padding)
    elif hasattr(config, "vocab_size") and not hasattr(config, "image_size"):
        tokenizer = AutoTokenizer.from_pretrained(model_dir if (model_dir / "tokenizer_config.json").exists() else path)
        pooling = cfg.pooling or st.get("pooling", "mean")
        normalize = cfg.normalize if cfg.normalize is not None else st.get("normalize", False)
        towers, specs = {"text": PooledTextTower(model, pooling, normalize).eval()}, {"text": TEXT_SPEC}
        image_pre = None
        text_pre = TextPreprocess(tokenizer, _max_length(cfg.max_length, st, tokenizer, config), cfg.text_padding or "longest")
        source.update(pooling=pooling, normalize=normalize, sentence_transformers=bool(st))
    elif hasattr(config, "image_size"):
        pooling = cfg.pooling or "cls"
        normalize = bool(cfg.normalize)
        towers, specs = {"image": PooledImageTower(model, pooling, normalize).eval()}, {"image": IMAGE_SPEC}
        image_pre, text_pre = image_preprocess(path), None
        source.update(pooling=pooling, normalize=normalize)
    else:
        raise RecipeError(f"teacher.hf: {path} holds a {config.model_type} model, which is neither a dual encoder "
                          f"(get_image_features/get_text_features), a text encoder nor an image encoder")
    if cfg.towers:
        towers = {t: m for t, m in towers.items() if t in cfg.towers}
        specs = {t: s for t, s in specs.items() if t in cfg.towers}
    return Bundle(towers=towers, specs=specs, image_preprocess=image_pre if "image" in towers else None,
                  text_preprocess=text_pre if "text" in towers else None, task=Bundle.task_for(towers), source=source,
                  audio_preprocess=audio_pre if "audio" in towers else None)
