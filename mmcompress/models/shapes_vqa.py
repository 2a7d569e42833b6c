"""The fusion demo teacher: answers questions about shapes images (data.shapes_vqa) with one word.

Built the way ALBEF-style models are: unimodal encoders, then fusion layers in which the question's tokens
attend to each other and then to the image's patch tokens (cross-attention), then an answer head on the
question's last token ([EOS]; questions are right-padded). The encoders start from the demo CLIP teacher
(shapes-clip): its image tower stays frozen, its text tower (the question words added to its vocabulary)
trains with the fusion layers and the head. Seeded, fixed steps: every machine gets the same weights for the
same config (same thread count).

forward(pixel_values (N, 3, 64, 64) float, input_ids (N, L) int64, attention_mask (N, L) int64) -> (N, answers)
answer logits. Saved as model.safetensors + tokenizer files + mmcompress_zoo.json (no pickles).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mmcompress.data import shapes, shapes_vqa
from mmcompress.models import shapes_clip, zoo_training

CODE_VERSION = 1  # bump when a change here changes the trained weights


@dataclass(frozen=True)
class ShapesVqaConfig:
    """The fusion layers and head trained over shapes-clip's frozen encoders; the zoo cache key hashes these."""

    fusion_layers: int = 2
    fusion_heads: int = 4
    fusion_intermediate: int = 384
    steps: int = 200
    batch: int = 64  # questions per step
    questions_per_image: int = 2  # the frozen image tower runs once per image of the batch
    lr: float = 1e-3
    warmup: int = 20
    weight_decay: float = 0.05
    train_images: int = 8000
    seed: int = 0
    base: str = "shapes-clip"  # the zoo teacher whose towers are the encoders


class FusionAttention(nn.Module):
    """Multi-head attention with CLIP's projection names (q/k/v/out_proj): queries from x, keys and values from
    `context` (x itself for self-attention)."""

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.num_heads, self.head_dim = heads, hidden // heads
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(hidden, heads * self.head_dim) for _ in range(3))
        self.out_proj = nn.Linear(heads * self.head_dim, hidden)

    def forward(self, x: torch.Tensor, context: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """x (N, T, H), context (N, S, H); keep (N, 1, 1, S) bool: the context positions that may be attended to."""
        n, t, _ = x.shape
        q = self.q_proj(x).reshape(n, t, -1, self.head_dim).transpose(1, 2)
        k, v = (p(context).reshape(n, context.shape[1], -1, self.head_dim).transpose(1, 2) for p in (self.k_proj, self.v_proj))
        y = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.out_proj(y.transpose(1, 2).reshape(n, t, -1))


class FusionMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(hidden, intermediate), nn.Linear(intermediate, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class FusionLayer(nn.Module):
    """The question's tokens attend to each other, then to the image's tokens (cross-attention), then an MLP."""

    def __init__(self, hidden: int, heads: int, intermediate: int):
        super().__init__()
        self.layer_norm1, self.layer_norm_cross, self.layer_norm2 = (nn.LayerNorm(hidden) for _ in range(3))
        self.self_attn, self.cross_attn = FusionAttention(hidden, heads), FusionAttention(hidden, heads)
        self.mlp = FusionMLP(hidden, intermediate)

    def forward(self, x: torch.Tensor, keep: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        h = self.layer_norm1(x)
        x = x + self.self_attn(h, h, keep)
        x = x + self.cross_attn(self.layer_norm_cross(x), img)
        return x + self.mlp(self.layer_norm2(x))


class ShapesVqa(nn.Module):
    def __init__(self, clip: nn.Module, cfg: ShapesVqaConfig, answers: int):
        super().__init__()
        hidden = clip.config.vision_config.hidden_size
        self.vision_model, self.text_model = clip.vision_model, clip.text_model
        self.image_norm = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(FusionLayer(hidden, cfg.fusion_heads, cfg.fusion_intermediate)
                                    for _ in range(cfg.fusion_layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, answers))

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.vision_model(pixel_values=pixel_values).last_hidden_state, input_ids, attention_mask)

    def fuse(self, img: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """img: (N, P, H) the image tower's last hidden state -> (N, answers)."""
        x = self.text_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (N, L, H)
        img = self.image_norm(img)
        keep = attention_mask.bool()[:, None, None, :]  # (N, 1, 1, L): padded question tokens are never attended to
        for layer in self.layers:
            x = layer(x, keep, img)
        last = (attention_mask.sum(1) - 1).long()  # the question's [EOS]: its text state has read the whole question
        return self.head(self.norm(x[torch.arange(x.shape[0]), last]))


def make_tokenizer(max_length: int):
    """shapes-clip's vocabulary with the question words appended (existing ids keep their embeddings)."""
    return shapes_clip.make_tokenizer(max_length, shapes_clip.WORDS + shapes_vqa.WORDS)


def base_config(path: Path) -> shapes_clip.ShapesClipConfig:
    return shapes_clip.ShapesClipConfig(**json.loads((path / "mmcompress_zoo.json").read_text())["config"])


def build_model(base_cfg: shapes_clip.ShapesClipConfig, cfg: ShapesVqaConfig, vocab: int) -> ShapesVqa:
    return ShapesVqa(shapes_clip.build_model(base_cfg, vocab), cfg, len(shapes_vqa.ANSWERS))


def train(cfg: ShapesVqaConfig, base_path: Path, progress: Callable[[int, int, float], None] | None = None):
    """Cross-entropy over the answers on seeded questions about the teacher-stream images. -> (model, tokenizer,
    log); the base teacher's weights at base_path start the encoders."""
    from safetensors.torch import load_file

    torch.manual_seed(cfg.seed)
    base_cfg = base_config(base_path)
    tokenizer = make_tokenizer(base_cfg.max_length)
    model = build_model(base_cfg, cfg, len(tokenizer))
    weights = load_file(base_path / "model.safetensors")
    emb = "text_model.embeddings.token_embedding.weight"
    with torch.no_grad():  # the new words' rows start random; every other weight as the base teacher has it
        model.text_model.embeddings.token_embedding.weight[: weights[emb].shape[0]] = weights[emb].float()
    model.load_state_dict({k: v.float() for k, v in weights.items()  # same attribute names as CLIPModel's
                           if k.startswith(("vision_model.", "text_model.")) and k != emb}, strict=False)
    model.vision_model.requires_grad_(False)
    data = shapes.generate(cfg.train_images, seed=cfg.seed, size=base_cfg.image_size, stream=shapes.STREAM_TEACHER)
    rng = np.random.default_rng([shapes.STREAM_TEACHER, cfg.seed, 7])
    mean = torch.tensor(shapes_clip.CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(shapes_clip.CLIP_STD).view(1, 3, 1, 1)
    pixels = torch.from_numpy(data.images)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = zoo_training.warmup_cosine(opt, cfg.warmup, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    model.vision_model.eval()

    def loss_at(step: int):
        idx = torch.randint(0, len(pixels), (cfg.batch // cfg.questions_per_image,), generator=gen)
        x = (pixels[idx].permute(0, 3, 1, 2).float() / 255.0 - mean) / std
        with torch.no_grad():
            img = model.vision_model(pixel_values=x).last_hidden_state.repeat_interleave(cfg.questions_per_image, 0)
        qa = [shapes_vqa.ask(data.texts[i], rng) for i in idx.repeat_interleave(cfg.questions_per_image).tolist()]
        enc = tokenizer([q for q, _ in qa], padding="longest", return_tensors="pt")
        y = torch.tensor([shapes_vqa.ANSWERS.index(a) for _, a in qa])
        logits = model.fuse(img, enc["input_ids"], enc["attention_mask"])
        return (nn.functional.cross_entropy(logits, y),
                lambda: {"batch_accuracy": round(float((logits.argmax(1) == y).float().mean()), 3)})

    log = zoo_training.run_steps(cfg.steps, opt, sched, params, loss_at, progress)
    model.eval()
    return model, tokenizer, log


def save(model: ShapesVqa, tokenizer, cfg: ShapesVqaConfig, base_cfg: shapes_clip.ShapesClipConfig, out: Path,
         extra: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    zoo_training.save_weights(model, out)
    tokenizer.save_pretrained(out)
    zoo_training.write_meta(out, "shapes-vqa", cfg, CODE_VERSION, extra, base_config=asdict(base_cfg),
                            answers=shapes_vqa.ANSWERS)


def load(path: Path):
    """-> (model, tokenizer, base_cfg, answers) rebuilt from a saved directory."""
    meta, cfg, tokenizer = zoo_training.read(path, ShapesVqaConfig)
    base_cfg = shapes_clip.ShapesClipConfig(**meta["base_config"])
    model = build_model(base_cfg, cfg, len(tokenizer))
    zoo_training.load_weights(model, {k: v.float() for k, v in zoo_training.weights(path).items()}, path)
    return model.eval(), tokenizer, base_cfg, meta["answers"]
