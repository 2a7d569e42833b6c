"""The audio demo teacher: a small CLAP-style audio-text dual encoder trained from scratch on procedural sounds.

Audio tower: transformers' ASTModel (Kaldi fbank frames from ASTFeatureExtractor, 8x8 patches: 4 x 12 = 48 tokens) + a linear
projection; text tower: CLIPTextModel over a word-level tokenizer + a linear projection; trained
contrastively like models/shapes_clip.py. Training is seeded with a fixed number of steps. Saved as
model.safetensors, config in mmcompress_zoo.json, tokenizer files and the feature extractor's
preprocessor_config.json (loaded back through AutoFeatureExtractor, as an HF directory's would be).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mmcompress.data import sounds
from mmcompress.models import zoo_training
from mmcompress.models.bundle import TowerSpec
from mmcompress.models.clip import TEXT_SPEC, embedding


@dataclass(frozen=True)
class SoundsClapConfig:
    """Model and training settings; the zoo cache key is a hash of these plus CODE_VERSION."""

    hidden: int = 128
    audio_layers: int = 3
    text_layers: int = 2
    heads: int = 4
    intermediate: int = 256
    projection: int = 64
    mel_bins: int = 32
    frames: int = 100           # 100 fbank frames at 10 ms = a 1.015 s window (every demo clip fits)
    max_length: int = 8         # '[BOS] a short loud high rising chirp [EOS]' is 8 tokens
    steps: int = 800
    batch: int = 64
    lr: float = 2e-3
    warmup: int = 40
    weight_decay: float = 0.05
    train_clips: int = 5000
    seed: int = 0


CODE_VERSION = 1  # bump when a change here changes the trained weights


def feature_extractor(cfg: SoundsClapConfig):
    from transformers import ASTFeatureExtractor

    # mean/std: the raw fbank mean and std of 3000 training clips (measured once; AST divides by 2 std)
    return ASTFeatureExtractor(num_mel_bins=cfg.mel_bins, max_length=cfg.frames, sampling_rate=sounds.SAMPLE_RATE,
                               mean=-3.15, std=4.27, do_normalize=True)


class TowersConfig:
    """The model's config as compress/students.py reads a dual encoder's: one transformers config per tower
    (audio_config: ASTConfig, text_config: CLIPTextConfig) and the projection size."""

    model_type = "sounds-clap"

    def __init__(self, audio_config, text_config, projection: int):
        self.audio_config, self.text_config, self.projection = audio_config, text_config, projection

    def to_dict(self) -> dict:
        return {"model_type": self.model_type, "audio_config": self.audio_config.to_dict(),
                "text_config": self.text_config.to_dict(), "projection": self.projection}


def towers_config(cfg: SoundsClapConfig, vocab_size: int) -> TowersConfig:
    from transformers import ASTConfig, CLIPTextConfig

    common = dict(hidden_size=cfg.hidden, num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate)
    audio = ASTConfig(num_hidden_layers=cfg.audio_layers, patch_size=8, frequency_stride=8, time_stride=8,
                      max_length=cfg.frames, num_mel_bins=cfg.mel_bins, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, **common)
    text = CLIPTextConfig(vocab_size=vocab_size, num_hidden_layers=cfg.text_layers,
                          max_position_embeddings=cfg.max_length, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                          **common)
    return TowersConfig(audio, text, cfg.projection)


class SoundsClap(nn.Module):
    """Built from a TowersConfig (towers_config(cfg, vocab) for the teacher; a distillation student's has fewer
    audio layers): compress/hf_towers.builder passes the class itself."""

    def __init__(self, config: TowersConfig):
        super().__init__()
        from transformers import ASTModel, CLIPTextModel

        config.audio_config._attn_implementation = config.text_config._attn_implementation = "sdpa"
        self.config = config
        self.audio_model, self.text_model = ASTModel(config.audio_config), CLIPTextModel(config.text_config)
        self.audio_projection = nn.Linear(config.audio_config.hidden_size, config.projection, bias=False)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def save_pretrained(self, out: Path) -> None:
        """model.safetensors (module names as keys) and config.json (each tower's config)."""
        import json

        out.mkdir(parents=True, exist_ok=True)
        zoo_training.save_weights(self, out)
        (out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2))


class AudioTower(nn.Module):
    """input_values (N, frames, mel bins) fbank -> (N, D): AST's pooled tokens (class + distillation), projected."""

    def __init__(self, model: SoundsClap):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        return self.model.audio_projection(self.model.audio_model(input_values=input_values).pooler_output)


class TextTower(nn.Module):
    """input_ids, attention_mask (N, L) -> (N, D): the EOS token's state, projected."""

    def __init__(self, model: SoundsClap):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.model.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.model.text_projection(embedding(out))


AUDIO_SPEC = TowerSpec(inputs={"input_values": {0: "batch"}})


def towers(model: SoundsClap) -> tuple[dict, dict]:
    model.eval()
    return {"audio": AudioTower(model), "text": TextTower(model)}, {"audio": AUDIO_SPEC, "text": TEXT_SPEC}


def make_tokenizer(max_length: int):
    from mmcompress.models.shapes_clip import make_tokenizer as words_tokenizer

    return words_tokenizer(max_length, sounds.WORDS)


def train(cfg: SoundsClapConfig, progress: Callable[[int, int, float], None] | None = None):
    """Contrastive training over all 60 captions every step (as shapes_clip.train). -> (model, tokenizer, log)."""
    torch.manual_seed(cfg.seed)
    tokenizer = make_tokenizer(cfg.max_length)
    model = SoundsClap(towers_config(cfg, len(tokenizer)))
    model.train()
    data = sounds.generate(cfg.train_clips, seed=cfg.seed, stream=sounds.STREAM_TEACHER)
    from mmcompress.models.audio_preprocess import for_extractor

    feats = torch.from_numpy(for_extractor(feature_extractor(cfg))(data.audio)["input_values"])  # (N, frames, mels)
    caps = sounds.captions()
    index = {c: i for i, c in enumerate(caps)}
    targets = torch.tensor([index[t] for t in data.texts])
    enc = tokenizer(caps, padding="max_length", max_length=cfg.max_length, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]  # (60, L)
    audio, text = towers(model)[0].values()
    model.train()
    log = zoo_training.fit_captions(model, cfg, len(feats), lambda idx: audio(feats[idx]), lambda: text(ids, mask),
                                    targets, progress)  # (B, D) clips against all 60 captions every step
    model.eval()
    return model, tokenizer, log


def save(model: SoundsClap, tokenizer, cfg: SoundsClapConfig, out: Path, extra: dict) -> None:
    zoo_training.save_weights(model, out)
    tokenizer.save_pretrained(out)
    feature_extractor(cfg).save_pretrained(out)
    zoo_training.write_meta(out, "sounds-clap", cfg, CODE_VERSION, extra)


def load(path: Path):
    """-> (model, tokenizer, feature extractor, cfg) from a saved zoo directory."""
    from transformers import AutoFeatureExtractor

    _, cfg, tokenizer = zoo_training.read(path, SoundsClapConfig)
    model = SoundsClap(towers_config(cfg, len(tokenizer)))
    zoo_training.load_weights(model, zoo_training.weights(path), path)
    return model.eval(), tokenizer, AutoFeatureExtractor.from_pretrained(path), cfg
