"""The training loop every torch-side stage shares (distillation trains a student with it, pruning recovers the
pruned model with it): the Student module, batches, losses against the teacher's outputs, device and precision,
checkpoints and resume.

Training is fixed-step and seeded: the batch of step s is a function of (seed, s) alone (epoch permutations),
and so is the dropout RNG, so a run resumed from a checkpoint gives the student an uninterrupted run gives,
and two machines with the same threads get the same student. Under torchrun every rank takes an equal
contiguous shard of each global batch and DistributedDataParallel averages the gradients, so N processes
follow the same trajectory as one (up to float summation order).
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mmcompress import distributed
from mmcompress.compress import losses
from mmcompress.compress.hf_towers import hf_model
from mmcompress.errors import RecipeError
from mmcompress.models.bundle import QUERY_TOWERS, Bundle

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
DEFAULT_SCALE = 20.0  # similarity scale (1 / temperature) when the teacher has no logit_scale of its own


class Student(nn.Module):
    """The distilled towers as one module (what DistributedDataParallel wraps): feeds -> {tower: (B, D)}.

    With hidden-state matching (`matches`), forward also returns, per tower, the MSE between each student
    layer's output, projected by a learned linear map, and the output of the teacher layer it started from
    (the teacher runs alongside, frozen). The projections train with the student and are not saved with it.
    """

    def __init__(self, towers: dict[str, nn.Module], input_names: dict[str, list[str]]):
        super().__init__()
        self.towers = nn.ModuleDict(towers)
        self.input_names = input_names
        self.proj = nn.ModuleDict()
        self.matches: dict = {}  # tower -> (student layers, teacher tower, teacher layers, kept teacher indices)

    def match_hidden(self, tower: str, student_layers: nn.ModuleList, teacher_tower: nn.Module,
                     teacher_layers: nn.ModuleList, keep: list[int], d_student: int, d_teacher: int) -> None:
        self.proj[tower] = nn.ModuleList([losses.HiddenMatch(d_student, d_teacher) for _ in keep])
        self.matches[tower] = (student_layers, teacher_tower, teacher_layers, keep)  # not registered: not trained

    def forward(self, feeds: dict[str, dict[str, torch.Tensor]]):
        out, hidden = {}, {}
        for t in feeds:
            args = [feeds[t][k] for k in self.input_names[t]]
            if t not in self.matches:
                out[t] = self.towers[t](*args)
                continue
            s_layers, teacher, t_layers, keep = self.matches[t]
            with _captured(s_layers) as s_h:
                out[t] = self.towers[t](*args)
            with torch.no_grad(), _captured(t_layers) as t_h:
                teacher(*args)
            hidden[t] = torch.stack([m(s_h[i].float(), t_h[j].float()) for i, (j, m) in enumerate(zip(keep, self.proj[t]))]).mean()
        return out, hidden


class _captured:
    """Collect the outputs of every layer in a ModuleList during one forward (HF layers return a tensor or a
    tuple whose first element is the hidden state)."""

    def __init__(self, layers: nn.ModuleList):
        self.layers, self.out, self.hooks = layers, [], []

    def __enter__(self) -> list:
        grab = lambda m, i, o: self.out.append(o[0] if isinstance(o, tuple) else o)
        self.hooks = [layer.register_forward_hook(grab) for layer in self.layers]
        return self.out

    def __exit__(self, *exc) -> None:
        for h in self.hooks:
            h.remove()


# ---- batches -------------------------------------------------------------------------------------------------
def batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def batch_feeds(bundle: Bundle, split, rows, towers) -> dict[str, dict[str, np.ndarray]]:
    """Preprocessed inputs of `rows` of the split for each tower (text padded to the batch's longest row; audio
    through the teacher's feature extractor)."""
    out = {}
    if "image" in towers:
        images = split.images[rows] if isinstance(split.images, np.ndarray) else [split.images[i] for i in rows]
        out["image"] = {"pixel_values": bundle.image_preprocess(images)}
    if "audio" in towers:
        out["audio"] = bundle.audio_preprocess([split.audio[i] for i in rows])
    if "text" in towers:
        out["text"] = bundle.text_preprocess([split.texts[i] for i in rows])
    return out


def batch_rows(step: int, batch: int, n: int, seed: int) -> np.ndarray:
    """The global batch of `step`: rows [step*batch, (step+1)*batch) of a stream of seeded epoch permutations.
    A function of (step, seed) alone, so a resumed run sees the batches an uninterrupted run sees."""
    start, stop = step * batch, (step + 1) * batch
    rows = []
    for epoch in range(start // n, (stop - 1) // n + 1):
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        lo, hi = max(start - epoch * n, 0), min(stop - epoch * n, n)
        rows.append(perm[lo:hi])
    return np.concatenate(rows)


# ---- device, precision, schedule ------------------------------------------------------------------------
def use_bf16(precision: str, device: torch.device) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from mmcompress.machine import cpu_bf16

    return cpu_bf16()


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RecipeError("stages: device cuda was asked for but torch sees no CUDA device; use device: auto")
        return torch.device("cuda")
    return torch.device("cpu")


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to 0 at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def teacher_scale(bundle: Bundle) -> float:
    """The teacher's similarity scale (exp of CLIP's learned log-temperature), else DEFAULT_SCALE."""
    for tower in bundle.towers.values():
        m = hf_model(tower)
        if m is not None and hasattr(m, "logit_scale"):
            return float(m.logit_scale.detach().exp().clamp(max=100))
    return DEFAULT_SCALE


# ---- the loop --------------------------------------------------------------------------------------------
def total_loss(cfg, student_out: dict, targets: dict, rows: np.ndarray, scale: float, device,
          hidden: dict | None = None) -> tuple[torch.Tensor, dict]:
    w = cfg.losses
    total = torch.zeros((), device=device)
    parts = {}
    for t, value in (hidden or {}).items():
        parts[f"{t}.hidden"] = value.detach()
        total = total + w.hidden * value
    teacher = {t: torch.from_numpy(targets[t][rows]).to(device) for t in ("image", "audio", "text") if t in targets}
    anchors = torch.from_numpy(targets["anchors"]).to(device) if "anchors" in targets else None
    query = next((t for t in QUERY_TOWERS if t in teacher), None)  # what a dual encoder's text is matched to
    for t, s in student_out.items():
        s = s.float()
        terms = {"cosine": (w.cosine, lambda: losses.cosine(s, teacher[t])),
                 "mse": (w.mse, lambda: losses.mse(s, teacher[t]))}
        if t == query and anchors is not None:
            cap = torch.from_numpy(targets["caption_anchor"][rows]).to(device)
            terms["contrastive_kd"] = (w.contrastive_kd, lambda: losses.contrastive_kd(s, teacher[t], anchors, scale))
            terms["contrastive"] = (w.contrastive, lambda: losses.caption_ce(s, anchors, cap, scale))
        elif t == "text" and query is not None:
            terms["contrastive_kd"] = (w.contrastive_kd, lambda: losses.contrastive_kd(s, teacher[t], teacher[query], scale))
            terms["contrastive"] = (w.contrastive, lambda: losses.contrastive(teacher[query], s, scale))
        for name, (weight, fn) in terms.items():
            if weight:
                value = fn()
                parts[f"{t}.{name}"] = value.detach()
                total = total + weight * value
    return total, parts


def train(student: Student, cfg, bundle: Bundle, split, targets: dict, seed: int, threads: int, folder: Path,
          evaluate: Callable[[Student], dict] | None, scale: float, title: str = "distilling",
          after_step: Callable[[], None] | None = None) -> list[dict]:
    """Train `student` in place for cfg.steps; checkpoints in folder, resumes from one. -> history (one entry
    per checkpoint interval and eval). Call on every rank under torchrun; only rank 0 writes."""
    from mmcompress.progress import bar

    world, rank = distributed.world(), distributed.rank()
    if cfg.batch % world:
        raise RecipeError(f"stages: distill.batch {cfg.batch} does not split evenly over {world} processes; make it "
                          f"a multiple of {world}")
    device = pick_device(cfg.device)
    bf16 = use_bf16(cfg.precision, device)
    torch.set_num_threads(max(1, threads // distributed.local_world()))
    student.to(device).train()
    for _, teacher, _, _ in student.matches.values():  # the frozen teacher runs beside the student
        teacher.to(device).eval()
    params, opt, sched = _optimizer(student, cfg)
    ckpt = folder / CHECKPOINT
    start, history = _resume(ckpt, student, opt, sched, device, cfg)
    model = student
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
    shard = cfg.batch // world
    interval = {"loss": 0.0, "steps": 0, "t0": time.perf_counter()}
    with bar(f"{title} {', '.join(student.towers)} ({'bf16' if bf16 else 'fp32'}, {device.type}"
             f"{f', {world} processes' if world > 1 else ''})", cfg.steps) as update:
        update(start)
        for step in range(start, cfg.steps):
            rows = batch_rows(step, cfg.batch, len(split), seed)[rank * shard:(rank + 1) * shard]
            torch.manual_seed(seed * 1_000_003 + step)  # dropout, if the student has any: a function of the step
            feeds = {t: {k: torch.from_numpy(v).to(device) for k, v in f.items()}
                     for t, f in batch_feeds(bundle, split, rows, student.towers).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out, hidden = model(feeds)
            loss, _ = total_loss(cfg, out, targets, rows, scale, device, hidden)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if after_step is not None:
                after_step()  # e.g. pruning's 2:4 masks: weights the step moved off zero go back to zero
            sched.step()
            value = _mean_over_ranks(loss.detach(), world)
            interval["loss"] += value
            interval["steps"] += 1
            update(step + 1, info=f"loss {value:.4f}")
            _record(step + 1, cfg, interval, sched, evaluate, student, history,
                    lambda done: _checkpoint(ckpt, done, student, opt, sched, history))
    student.eval()
    for _, teacher, _, _ in student.matches.values():
        teacher.cpu()
    return history


def _optimizer(student: Student, cfg):
    """-> (trainable parameters, AdamW without weight decay on biases and norms, warm-up + cosine schedule)."""
    params = [p for p in student.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    return params, opt, sched


def _resume(ckpt: Path, student: Student, opt, sched, device, cfg) -> tuple[int, list]:
    """-> (first step, history so far): from the stage's checkpoint when one is there, else (0, [])."""
    from mmcompress.progress import console

    if not ckpt.is_file():
        return 0, []
    state = torch.load(ckpt, map_location=device, weights_only=True)
    student.load_state_dict(state["student"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if distributed.is_main():
        console.print(f"  resuming {cfg.name} from its checkpoint at step {state['step']}/{cfg.steps}")
    return state["step"], json.loads(state["history"])


def _mean_over_ranks(value: torch.Tensor, world: int) -> float:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(value)
        value /= world
    return value.item()


def _record(done: int, cfg, interval: dict, sched, evaluate, student: Student, history: list,
            checkpoint: Callable[[int], None]) -> None:
    """At an eval or checkpoint step: append the interval's mean loss (and the eval, on rank 0) to history and
    write the checkpoint (rank 0)."""
    from mmcompress.progress import console

    at_eval = evaluate is not None and cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps)
    at_ckpt = done % cfg.checkpoint_every == 0 or done == cfg.steps
    if not (at_eval or at_ckpt):
        return
    entry = {"step": done, "loss": round(interval["loss"] / interval["steps"], 6),
             "lr": round(sched.get_last_lr()[0], 8), "seconds": round(time.perf_counter() - interval["t0"], 2)}
    interval.update(loss=0.0, steps=0, t0=time.perf_counter())
    if at_eval and distributed.is_main():
        student.eval()
        entry["eval"] = evaluate(student)
        student.train()
        console.print(f"  step {done}/{cfg.steps}: loss {entry['loss']:.4f}  " +
                      "  ".join(f"{k} {v}" for k, v in entry["eval"].items()))
    history.append(entry)
    if at_ckpt and distributed.is_main():
        checkpoint(done)


def _checkpoint(path: Path, step: int, student, opt, sched, history) -> None:
    """Atomically: a kill during the write leaves the previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "student": student.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "history": json.dumps(history)}, tmp)
    os.replace(tmp, path)
