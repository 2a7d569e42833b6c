"""What the zoo teachers' training shares: AdamW groups, the warm-up + cosine schedule, the step loop with its
log, the contrastive loss over a fixed caption set, and safetensors save/load with a clear mismatch error.

The operations run in the order the teachers always ran them, so a teacher trained through here has the same
weights as before and its zoo cache key (config + CODE_VERSION) stays valid.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

Progress = Callable[[int, int, float], None]


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (not on biases, norms, scales)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def warmup_cosine(opt: torch.optim.Optimizer, warmup: int, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))


def run_steps(steps: int, opt, sched, params, loss_at: Callable[[int], tuple[torch.Tensor, Callable[[], dict]]],
              progress: Progress | None) -> list[dict]:
    """`steps` optimiser steps on loss_at(step) -> (loss, extra log fields); gradients clipped to norm 1.
    -> the log: step, loss, extra fields and seconds every 50 steps and at the last."""
    log, t0 = [], time.perf_counter()
    for step in range(steps):
        loss, extra = loss_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            log.append({"step": step, "loss": round(loss.item(), 4), **extra(),
                        "seconds": round(time.perf_counter() - t0, 1)})
        if progress:
            progress(step + 1, steps, loss.item())
    return log


def caption_loss(logits: torch.Tensor, y: torch.Tensor, n_captions: int) -> torch.Tensor:
    """The zoo teachers' contrastive loss over a fixed caption set: logits (B, C) of each row against every
    caption, y (B,) each row's caption; the mean of row->caption cross-entropy and caption->rows (soft targets
    over the rows carrying that caption, for the captions present in the batch)."""
    loss_rows = nn.functional.cross_entropy(logits, y)
    onehot = nn.functional.one_hot(y, n_captions).float().T  # (C, B)
    present = onehot.sum(1) > 0
    soft = onehot[present] / onehot[present].sum(1, keepdim=True)
    loss_caps = -(soft * logits.T[present].log_softmax(-1)).sum(1).mean()
    return (loss_rows + loss_caps) / 2


def fit_captions(model: nn.Module, cfg, n_rows: int, embed_rows: Callable[[torch.Tensor], torch.Tensor],
                 embed_captions: Callable[[], torch.Tensor], targets: torch.Tensor,
                 progress: Progress | None) -> list[dict]:
    """Contrastive training of a dual encoder against every caption each step: rows drawn with a generator
    seeded by cfg.seed, embed_rows(idx) (B, D) and embed_captions() (C, D) compared at the model's
    logit_scale, caption_loss against targets[idx]. cfg has steps, batch, lr, warmup, weight_decay, seed."""
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = warmup_cosine(opt, cfg.warmup, cfg.steps)
    gen = torch.Generator().manual_seed(cfg.seed)

    def loss_at(step: int):
        idx = torch.randint(0, n_rows, (cfg.batch,), generator=gen)
        rows = nn.functional.normalize(embed_rows(idx), dim=-1)  # (B, D)
        caps = nn.functional.normalize(embed_captions(), dim=-1)  # (C, D)
        logits = model.logit_scale.exp().clamp(max=100) * rows @ caps.T  # (B, C)
        return caption_loss(logits, targets[idx], len(caps)), dict

    return run_steps(cfg.steps, opt, sched, list(model.parameters()), loss_at, progress)


def save_weights(model: nn.Module, out: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors",
              metadata={"format": "pt"})


def load_weights(model: nn.Module, weights: dict, path: Path) -> None:
    """Load a zoo directory's weights; RuntimeError naming the directory when they do not match the model."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"{path}: weights do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


META = "mmcompress_zoo.json"  # what a zoo directory is: its name, config, code version and training log


def write_meta(out: Path, zoo: str, cfg, code_version: int, extra: dict, **fields) -> None:
    """META: zoo name, config, `fields`, code version, then `extra` (the training log and time)."""
    import json
    from dataclasses import asdict

    (out / META).write_text(json.dumps({"zoo": zoo, "config": asdict(cfg), **fields, "code_version": code_version,
                                        **extra}, indent=2))


def read(path: Path, config_class) -> tuple[dict, object, object]:
    """-> (meta, config, tokenizer) of a saved zoo directory."""
    import json

    from transformers import AutoTokenizer

    meta = json.loads((path / META).read_text())
    return meta, config_class(**meta["config"]), AutoTokenizer.from_pretrained(path)


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")
