"""The demo teacher: a small CLIPModel (conv stem, 4+4 layers, hidden 192) trained from scratch on shapes.

Training is seeded and runs a fixed number of steps, so every machine gets the same weights for the same
config (same thread count). The result is saved like a Hugging Face directory (config.json, safetensors,
tokenizer files) plus mmcompress_zoo.json, which says how to rebuild the conv stem.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from mmcompress.data import shapes
from mmcompress.models import zoo_training
from mmcompress.models.clip import embedding

SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]  # ids 0..3; eos must not be 2 (HF CLIP's legacy argmax pooling)
WORDS = ["a", "small", "large", *shapes.COLOURS, *shapes.SHAPES,
         "handwritten", "digit", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
         "photo", "of", "the", "an", "image", "shape"]
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ShapesClipConfig:
    """Model and training settings; the zoo cache key is a hash of these plus CODE_VERSION."""

    hidden: int = 192
    layers: int = 4
    heads: int = 4
    intermediate: int = 768
    projection: int = 128
    image_size: int = 64
    max_length: int = 8
    steps: int = 400
    batch: int = 64
    lr: float = 5e-4
    warmup: int = 10
    weight_decay: float = 0.1
    train_images: int = 20000
    seed: int = 0


CODE_VERSION = 2  # bump when a change here changes the trained weights


class ConvStem(nn.Module):
    """(N, 3, 64, 64) -> (N, hidden, 8, 8): three stride-2 3x3 convs in place of the 8x8 patch embedding.

    HF CLIPVisionEmbeddings reads patch_embedding.weight.dtype, hence the `weight` property.
    """

    def __init__(self, hidden: int):
        super().__init__()
        c1, c2 = hidden // 4, hidden // 2
        self.net = nn.Sequential(nn.Conv2d(3, c1, 3, 2, 1), nn.GELU(), nn.Conv2d(c1, c2, 3, 2, 1), nn.GELU(),
                                 nn.Conv2d(c2, hidden, 3, 2, 1))

    @property
    def weight(self) -> torch.Tensor:
        return self.net[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_tokenizer(max_length: int, words: list[str] | None = None):
    """A word-level tokenizer over SPECIAL + words (default WORDS); '[BOS] text [EOS]'."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys(SPECIAL + (WORDS if words is None else words)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[BOS] $A [EOS]", special_tokens=[("[BOS]", 2), ("[EOS]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]",
                                   eos_token="[EOS]", model_max_length=max_length)


def build_model(cfg: ShapesClipConfig, vocab_size: int) -> nn.Module:
    from transformers import CLIPConfig

    common = dict(hidden_size=cfg.hidden, num_hidden_layers=cfg.layers, num_attention_heads=cfg.heads,
                  intermediate_size=cfg.intermediate, projection_dim=cfg.projection)
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, max_position_embeddings=cfg.max_length, pad_token_id=0,
                         bos_token_id=2, eos_token_id=3, **common),
        vision_config=dict(image_size=cfg.image_size, patch_size=8, **common),
        projection_dim=cfg.projection,
    )
    config._attn_implementation = "sdpa"
    return from_config(config)


def from_config(config) -> nn.Module:
    """An untrained CLIPModel with the conv stem, from a transformers CLIPConfig (also a student's, whose image
    tower may be narrower than the text tower)."""
    from transformers import CLIPModel

    model = CLIPModel(config)
    model.vision_model.embeddings.patch_embedding = ConvStem(config.vision_config.hidden_size)
    return model


def train(cfg: ShapesClipConfig, progress: Callable[[int, int, float], None] | None = None):
    """Contrastive training. Returns (model, tokenizer, log).

    Captions repeat within a batch (60 distinct), so every step encodes all 60 captions: image->caption is
    a 60-way cross-entropy; caption->image spreads its target over the images that carry that caption.
    """
    torch.manual_seed(cfg.seed)
    tokenizer = make_tokenizer(cfg.max_length)
    model = build_model(cfg, len(tokenizer))
    model.train()
    data = shapes.generate(cfg.train_images, seed=cfg.seed, size=cfg.image_size, stream=shapes.STREAM_TEACHER)
    caps = shapes.captions()
    cap_index = {c: i for i, c in enumerate(caps)}
    targets = torch.tensor([cap_index[t] for t in data.texts])
    enc = tokenizer(caps, padding="max_length", max_length=cfg.max_length, return_tensors="pt")
    enc = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}  # (60, L) each
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    pixels = torch.from_numpy(data.images)  # (N, H, W, 3) uint8; normalised per batch to save memory

    log = zoo_training.fit_captions(
        model, cfg, len(pixels),
        lambda idx: embedding(model.get_image_features(
            pixel_values=(pixels[idx].permute(0, 3, 1, 2).float() / 255.0 - mean) / std)),  # (B, 3, H, W) in
        lambda: embedding(model.get_text_features(**enc)), targets, progress)  # all 60 captions every step
    model.eval()
    return model, tokenizer, log


def save(model: nn.Module, tokenizer, cfg: ShapesClipConfig, out: Path, extra: dict) -> None:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    zoo_training.write_meta(out, "shapes-clip", cfg, CODE_VERSION, extra)


def load(path: Path):
    """Rebuild the model from a saved zoo directory: CLIPModel + conv stem, then the saved weights."""
    _, cfg, tokenizer = zoo_training.read(path, ShapesClipConfig)
    model = build_model(cfg, len(tokenizer))
    zoo_training.load_weights(model, zoo_training.weights(path), path)
    model.eval()
    return model, tokenizer, cfg
