"""Distillation: a smaller student learns the teacher's embeddings on the train split (docs/distillation.md).

    stages:
      - distill: {towers: {image: {layers: 2, width: 0.75}}, steps: 300}

The student of a Hugging Face or zoo teacher is the teacher's own class with fewer layers / a narrower
width (compress/students.py), saved with save_pretrained; a `python:` student is your module, saved as
safetensors. Towers not distilled stay the teacher's, so class prompts stay valid.

Training is fixed-step and seeded: the batch of step s is a function of (seed, s) alone (epoch permutations),
and so is the dropout RNG, so a run resumed from a checkpoint gives the student an uninterrupted run gives,
and two machines with the same threads get the same student. Under torchrun every rank takes an equal
contiguous shard of each global batch and DistributedDataParallel averages the gradients, so N processes
follow the same trajectory as one (up to float summation order).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mmcompress import distributed
from mmcompress.compress import losses, students
from mmcompress.errors import RecipeError
from mmcompress.models.bundle import Bundle

ANCHORS = 4096  # distinct train captions kept as the texts contrastive losses compare the image tower with
CHECKPOINT = "checkpoint.pt"
HISTORY = "history.json"
STUDENT = "student"
DEFAULT_SCALE = 20.0  # similarity scale (1 / temperature) when the teacher has no logit_scale of its own


# ---- the student -----------------------------------------------------------------------------------------
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


def _hf_model(tower: nn.Module) -> nn.Module | None:
    """The Hugging Face model inside a teacher tower (models/clip.py, models/hf.py wrappers), if any."""
    m = getattr(tower, "model", None)
    return m if m is not None and hasattr(m, "config") and hasattr(m, "save_pretrained") else None


def _rewrap(tower: nn.Module, model: nn.Module) -> nn.Module:
    """The same tower wrapper around another model (pooling and normalisation kept)."""
    if hasattr(tower, "pooling"):
        return type(tower)(model, tower.pooling, tower.normalize)
    return type(tower)(model)


def _builder(bundle: Bundle):
    """How to build an untrained model of the bundle's class (the zoo teacher's adds its conv stem; a stage's
    model was built like the model it came from)."""
    if bundle.source.get("built_as", bundle.source.get("kind")) == "zoo":
        from mmcompress.models import shapes_clip

        return shapes_clip.from_config
    return None


def build(bundle: Bundle, cfg, base: Path, where: Callable[..., str]) -> tuple[Student, nn.Module | None, dict]:
    """-> (student, the shrunk Hugging Face model or None, description). Trainable: the distilled towers only.
    base: the recipe's folder (python students import from there); where(*keys) names a recipe key in errors
    ('recipe.yaml:14 stages[0].distill.towers.image')."""
    from mmcompress.models.entrypoint import _import

    plan = {t: s for t, s in cfg.towers.items() if s.python is None}
    custom = {t: s for t, s in cfg.towers.items() if s.python is not None}
    for t in cfg.towers:
        if t not in bundle.towers:
            raise RecipeError(f"{where('towers', t)}: the teacher has no {t} tower (it has "
                              f"{', '.join(bundle.towers)})")
    towers: dict[str, nn.Module] = {}
    hf_model = None
    desc: dict = {"towers": {}}
    if plan:
        models = {id(_hf_model(bundle.towers[t])) for t in plan}
        teacher_model = _hf_model(bundle.towers[next(iter(plan))])
        if teacher_model is None or len(models) != 1:
            raise RecipeError(f"{where('towers')}: layers/width students need a Hugging Face or zoo teacher (this "
                              f"one is {bundle.source.get('kind')}); give the tower a `python:` student instead")
        try:
            hf_model = students.shrink(teacher_model, {t: {"layers": s.layers, "width": s.width, "init": s.init}
                                                       for t, s in plan.items()}, build=_builder(bundle))
        except ValueError as e:
            raise RecipeError(f"{where('towers')}: {e}") from None
        for name, p in hf_model.named_parameters():
            p.requires_grad_(any(students.owns(hf_model.config, t, name) for t in plan))
        for t in plan:
            towers[t] = _rewrap(bundle.towers[t], hf_model)
            desc["towers"][t] = {"kind": "hf", "class": type(hf_model).__name__, "layers": plan[t].layers,
                                 "width": plan[t].width, "init": plan[t].init}
    for t, s in custom.items():
        _, fn = _import(s.python, base, where("towers", t, "python"))
        module = fn(bundle.towers[t])
        if not isinstance(module, nn.Module):
            raise RecipeError(f"{where('towers', t, 'python')}: {s.python} returned {type(module).__name__}, not a "
                              f"torch.nn.Module")
        towers[t] = module
        desc["towers"][t] = {"kind": "python", "entrypoint": s.python}
    student = Student(towers, {t: list(bundle.specs[t].inputs) for t in towers})
    if cfg.losses.hidden:
        if custom:
            raise RecipeError(f"{where('losses', 'hidden')}: hidden-state matching pairs layers of the teacher's own "
                              f"class; the python student of {', '.join(custom)} has none; set it to 0")
        for t in plan:
            s_prefix, t_prefix = students.layers_prefix(hf_model, t), students.layers_prefix(teacher_model, t)
            s_layers, t_layers = hf_model.get_submodule(s_prefix), teacher_model.get_submodule(t_prefix)
            keep = students.kept_layers(len(t_layers), len(s_layers))
            student.match_hidden(t, s_layers, bundle.towers[t], t_layers, keep,
                                 students.hidden_size(hf_model.config, t), students.hidden_size(teacher_model.config, t))
    desc["parameters"] = {t: _parameters(student.towers[t], t) for t in towers}
    desc["teacher_parameters"] = {t: _parameters(bundle.towers[t], t) for t in towers}
    return student, hf_model, desc


def _parameters(tower_module: nn.Module, tower: str) -> int:
    """Parameters of one tower, teacher's or student's (a dual encoder's tower module holds the whole model:
    count the tower's own)."""
    m = _hf_model(tower_module)
    if m is not None and students.dual(m.config):
        return sum(p.numel() for n, p in m.named_parameters() if students.owns(m.config, tower, n))
    return sum(p.numel() for p in tower_module.parameters())


def student_bundle(bundle: Bundle, student: Student, name: str, folder: Path, saved: str = STUDENT) -> Bundle:
    """The teacher's bundle with the distilled (or pruned) towers swapped for the student's; `saved`: the
    stage folder's sub-folder holding the model."""
    towers = {t: (student.towers[t] if t in student.towers else m).eval() for t, m in bundle.towers.items()}
    return Bundle(towers=towers, specs=bundle.specs, image_preprocess=bundle.image_preprocess,
                  text_preprocess=bundle.text_preprocess, task=bundle.task,
                  source={"kind": "stage", "stage": name, "path": str(folder / saved),
                          "parent": bundle.source.get("stage", "teacher"),
                          "hf_dir": str(_hf_dir(bundle)) if _hf_dir(bundle) else None,
                          "built_as": bundle.source.get("built_as", bundle.source.get("kind"))})


def save(student: Student, hf_model, bundle: Bundle, folder: Path) -> dict:
    """Write the student: a save_pretrained directory (loadable without mmcompress) and/or one safetensors
    file per python-built tower. -> {relative file: {}} for the manifest."""
    from safetensors.torch import save_file
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's shard bar would break into our progress output
    out = folder / STUDENT
    out.mkdir(parents=True, exist_ok=True)
    if hf_model is not None:
        src = _hf_dir(bundle)
        model_out = out / _st_layout(src, out) if src is not None else out
        hf_model.save_pretrained(model_out)
        if bundle.text_preprocess is not None:
            bundle.text_preprocess.tokenizer.save_pretrained(model_out)
        if src is not None and (src / "preprocessor_config.json").is_file():
            (model_out / "preprocessor_config.json").write_bytes((src / "preprocessor_config.json").read_bytes())
    for t, m in student.towers.items():
        if hf_model is None or _hf_model(m) is not hf_model:
            save_file({k: v.contiguous() for k, v in m.state_dict().items()}, out / f"{t}.safetensors")
    return {str(p.relative_to(folder)): {} for p in sorted(out.rglob("*")) if p.is_file()}


def _hf_dir(bundle: Bundle) -> Path | None:
    """The Hugging Face directory the model came from (through any earlier stages), if it came from one."""
    d = bundle.source.get("hf_dir") or (bundle.source.get("path") if bundle.source.get("kind") == "hf" else None)
    return Path(d) if d else None


def _st_layout(src: Path, out: Path) -> str:
    """A sentence-transformers teacher: copy its module files (modules.json, pooling, normalize, configs) into
    out, so the student loads like the teacher (sentence-transformers, or teacher.hf: student), and return the
    transformer's sub-folder ('' when it lives at the top). Any other teacher: ''."""
    import shutil

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


def load(bundle: Bundle, cfg, folder: Path, base: Path, where: Callable[..., str]) -> Bundle:
    """The student a finished stage saved, rebuilt the way it was made and given its trained weights."""
    from safetensors.torch import load_file

    student, hf_model, _ = build(bundle, cfg, base, where)
    out = folder / STUDENT
    if hf_model is not None:
        model_dir = next(out.rglob("model*.safetensors")).parent
        if _builder(bundle) is None:  # transformers' own loader: it maps checkpoint names to module names
            hf_model.load_state_dict(type(hf_model).from_pretrained(model_dir).state_dict())
        else:  # the zoo class (conv stem): its names are the module names
            state = {}
            for f in sorted(model_dir.glob("model*.safetensors")):
                state.update(load_file(f))
            missing, unexpected = hf_model.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.endswith("position_ids")]
            if missing or unexpected:
                raise RuntimeError(f"{out}: weights do not match the student: missing {missing[:3]}, "
                                   f"unexpected {unexpected[:3]}")
    for t, m in student.towers.items():
        if hf_model is None or _hf_model(m) is not hf_model:
            m.load_state_dict(load_file(out / f"{t}.safetensors"))
    return student_bundle(bundle, student, cfg.name, folder)


# ---- teacher outputs on the train split ------------------------------------------------------------------
def train_key(bundle: Bundle, split) -> str:
    """Hash of the train split as the towers see it (raw rows and preprocessing)."""
    h = hashlib.sha256()
    if split.images is not None:
        for im in (split.images if isinstance(split.images, list) else [split.images]):
            h.update(np.ascontiguousarray(im).tobytes())
    h.update(json.dumps([list(split.texts), {t: p.to_dict() for t in bundle.towers
                                              if (p := bundle.preprocess(t)) is not None}], sort_keys=True).encode())
    return h.hexdigest()[:16]


def _batches(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(i + size, n))


def _feeds(bundle: Bundle, split, rows, towers) -> dict[str, dict[str, np.ndarray]]:
    """Preprocessed inputs of `rows` of the split for each tower (text padded to the batch's longest row)."""
    out = {}
    if "image" in towers:
        images = split.images[rows] if isinstance(split.images, np.ndarray) else [split.images[i] for i in rows]
        out["image"] = {"pixel_values": bundle.image_preprocess(images)}
    if "text" in towers:
        out["text"] = bundle.text_preprocess([split.texts[i] for i in rows])
    return out


def teacher_targets(bundle: Bundle, split, seed: int, folder: Path) -> tuple[dict, dict]:
    """Teacher embeddings of every train row for every tower, plus the anchor texts (distinct captions, at most
    ANCHORS) the contrastive losses use: targets.npz with image (N, D), text (N, D), anchors (T, D),
    caption_anchor (N,) (the anchor of each row's caption, -1 when it is not one)."""
    from mmcompress.artifact import save_npz
    from mmcompress.progress import bar

    n = len(split)
    out: dict[str, np.ndarray] = {}
    with torch.inference_mode(), bar("teacher outputs on the train split", n * len(bundle.towers)) as update:
        done = 0
        for t, tower in bundle.towers.items():
            parts = []
            for sl in _batches(n, 64):
                feeds = _feeds(bundle, split, range(sl.start, sl.stop), [t])[t]
                parts.append(tower(*[torch.from_numpy(feeds[k]) for k in bundle.specs[t].inputs]).float().numpy())
                done += sl.stop - sl.start
                update(done)
            out[t] = np.concatenate(parts)
        if "text" in bundle.towers and "image" in bundle.towers:
            distinct = list(dict.fromkeys(split.texts))
            if len(distinct) > ANCHORS:
                keep = np.sort(np.random.default_rng(seed).choice(len(distinct), ANCHORS, replace=False))
                distinct = [distinct[i] for i in keep]
            index = {c: i for i, c in enumerate(distinct)}
            anchors = []
            for sl in _batches(len(distinct), 64):
                enc = bundle.text_preprocess(distinct[sl])
                anchors.append(bundle.towers["text"](*[torch.from_numpy(enc[k]) for k in bundle.specs["text"].inputs]).float().numpy())
            out["anchors"] = np.concatenate(anchors)
            out["caption_anchor"] = np.array([index.get(c, -1) for c in split.texts], dtype=np.int64)
    save_npz(folder / "targets.npz", **out)
    return {"targets.npz": {"arrays": {k: list(v.shape) for k, v in out.items()}}}, {}


# ---- training --------------------------------------------------------------------------------------------
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


def lr_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up to 1 over `warmup` steps, then cosine decay to 0 at `steps`."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def use_bf16(precision: str, device: torch.device) -> bool:
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    from mmcompress.machine import cpu_bf16

    return cpu_bf16()


def _device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RecipeError("stages: device cuda was asked for but torch sees no CUDA device; use device: auto")
        return torch.device("cuda")
    return torch.device("cpu")


@dataclass
class Interval:
    """What one checkpoint interval reports."""

    step: int
    loss: float
    seconds: float
    eval: dict = field(default_factory=dict)


def _loss(cfg, student_out: dict, targets: dict, rows: np.ndarray, scale: float, device,
          hidden: dict | None = None) -> tuple[torch.Tensor, dict]:
    w = cfg.losses
    total = torch.zeros((), device=device)
    parts = {}
    for t, value in (hidden or {}).items():
        parts[f"{t}.hidden"] = value.detach()
        total = total + w.hidden * value
    teacher = {t: torch.from_numpy(targets[t][rows]).to(device) for t in ("image", "text") if t in targets}
    anchors = torch.from_numpy(targets["anchors"]).to(device) if "anchors" in targets else None
    for t, s in student_out.items():
        s = s.float()
        terms = {"cosine": (w.cosine, lambda: losses.cosine(s, teacher[t])),
                 "mse": (w.mse, lambda: losses.mse(s, teacher[t]))}
        if t == "image" and anchors is not None:
            cap = torch.from_numpy(targets["caption_anchor"][rows]).to(device)
            terms["contrastive_kd"] = (w.contrastive_kd, lambda: losses.contrastive_kd(s, teacher[t], anchors, scale))
            terms["contrastive"] = (w.contrastive, lambda: losses.caption_ce(s, anchors, cap, scale))
        elif t == "text" and "image" in teacher:
            terms["contrastive_kd"] = (w.contrastive_kd, lambda: losses.contrastive_kd(s, teacher[t], teacher["image"], scale))
            terms["contrastive"] = (w.contrastive, lambda: losses.contrastive(teacher["image"], s, scale))
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
    from mmcompress.progress import bar, console

    world, rank = distributed.world(), distributed.rank()
    if cfg.batch % world:
        raise RecipeError(f"stages: distill.batch {cfg.batch} does not split evenly over {world} processes; make it "
                          f"a multiple of {world}")
    device = _device(cfg.device)
    bf16 = use_bf16(cfg.precision, device)
    torch.set_num_threads(max(1, threads // distributed.local_world()))
    student.to(device).train()
    for _, teacher, _, _ in student.matches.values():  # the frozen teacher runs beside the student
        teacher.to(device).eval()
    params = [p for p in student.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.warmup, cfg.steps))
    start, history = 0, []
    ckpt = folder / CHECKPOINT
    if ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, history = state["step"], json.loads(state["history"])
        if distributed.is_main():
            console.print(f"  resuming {cfg.name} from its checkpoint at step {start}/{cfg.steps}")
    model = student
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)
    n = len(split)
    shard = cfg.batch // world
    interval_loss, interval_steps, t0 = 0.0, 0, time.perf_counter()
    with bar(f"{title} {', '.join(student.towers)} ({'bf16' if bf16 else 'fp32'}, {device.type}"
             f"{f', {world} processes' if world > 1 else ''})", cfg.steps) as update:
        update(start)
        for step in range(start, cfg.steps):
            rows = batch_rows(step, cfg.batch, n, seed)[rank * shard:(rank + 1) * shard]
            torch.manual_seed(seed * 1_000_003 + step)  # dropout, if the student has any: a function of the step
            feeds = {t: {k: torch.from_numpy(v).to(device) for k, v in f.items()}
                     for t, f in _feeds(bundle, split, rows, student.towers).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out, hidden = model(feeds)
            loss, _ = _loss(cfg, out, targets, rows, scale, device, hidden)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            if after_step is not None:
                after_step()  # e.g. pruning's 2:4 masks: weights the step moved off zero go back to zero
            sched.step()
            value = loss.detach()
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(value)
                value /= world
            interval_loss += value.item()
            interval_steps += 1
            done = step + 1
            update(done, info=f"loss {value.item():.4f}")
            at_eval = evaluate is not None and cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps)
            at_ckpt = done % cfg.checkpoint_every == 0 or done == cfg.steps
            if at_eval or at_ckpt:
                entry = {"step": done, "loss": round(interval_loss / interval_steps, 6),
                         "lr": round(sched.get_last_lr()[0], 8), "seconds": round(time.perf_counter() - t0, 2)}
                interval_loss, interval_steps, t0 = 0.0, 0, time.perf_counter()
                if at_eval and distributed.is_main():
                    student.eval()
                    entry["eval"] = evaluate(student)
                    student.train()
                    console.print(f"  step {done}/{cfg.steps}: loss {entry['loss']:.4f}  " +
                                  "  ".join(f"{k} {v}" for k, v in entry["eval"].items()))
                history.append(entry)
                if at_ckpt and distributed.is_main():
                    _checkpoint(ckpt, done, student, opt, sched, history)
    student.eval()
    for _, teacher, _, _ in student.matches.values():
        teacher.cpu()
    return history


def _checkpoint(path: Path, step: int, student, opt, sched, history) -> None:
    """Atomically: a kill during the write leaves the previous checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save({"step": step, "student": student.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "history": json.dumps(history)}, tmp)
    os.replace(tmp, path)


def teacher_scale(bundle: Bundle) -> float:
    """The teacher's similarity scale (exp of CLIP's learned log-temperature), else DEFAULT_SCALE."""
    for tower in bundle.towers.values():
        m = _hf_model(tower)
        if m is not None and hasattr(m, "logit_scale"):
            return float(m.logit_scale.detach().exp().clamp(max=100))
    return DEFAULT_SCALE


# ---- the stage -------------------------------------------------------------------------------------------
def embed(student: Student, ctx) -> dict[str, np.ndarray]:
    """The student's embeddings of the eval inputs, per distilled tower (batches trimmed as the checks do)."""
    from mmcompress.runtimes.base import run_batched
    from mmcompress.runtimes.torch import TorchSession

    device = next(student.parameters()).device
    return {t: run_batched(TorchSession(m, student.input_names[t], device=device), ctx.inputs.feeds[t],
                           trim=ctx.inputs.trim[t])
            for t, m in student.towers.items()}


def evaluator(ctx) -> Callable[[Student], dict]:
    """student -> {task metric: value, '<tower> cos': mean cosine to the teacher} on the eval split."""
    from mmcompress.checks import tasks
    from mmcompress.checks.fidelity import cosine_rows

    r = ctx.recipe

    def run(student: Student) -> dict:
        got = embed(student, ctx)
        acc, _ = tasks.metrics(ctx.teacher.task, {**ctx.teacher_emb, **got}, ctx.inputs, r.data.prompts.ensemble,
                               r.checks.recall_k, r.checks.knn_k)
        out = {acc["primary"]["metric"]: round(acc["primary"]["value"], 2)} if acc["primary"] else {}
        for t, e in got.items():
            c = cosine_rows(e, ctx.teacher_emb[t])
            out[f"{t} cos"] = round(float(c.mean()), 4)
            out[f"{t} cos min"] = round(float(c.min()), 4)
        return out
    return run


def run(parent: Bundle, cfg, ctx, folder: Path) -> tuple[dict, dict] | None:
    """Train the student of `parent` on the teacher's train-split outputs; rank 0 saves it with its eval
    embeddings (what its ONNX export is checked against) and the training history. Other ranks return None."""
    from mmcompress.artifact import save_npz, write_json

    student, hf_model, desc = build(parent, cfg, ctx.recipe.base, ctx.where)
    device = _device(cfg.device)
    history = train(student, cfg, parent, ctx.dataset.split("train"), ctx.targets, ctx.recipe.seed, ctx.threads,
                    folder, evaluator(ctx) if cfg.eval_every else None, teacher_scale(ctx.teacher))
    if not distributed.is_main():
        return None
    student.cpu()
    files = save(student, hf_model, parent, folder)
    emb = {**{t: e for t, e in ctx.teacher_emb.items() if t in parent.towers}, **embed(student, ctx)}
    save_npz(folder / "embeddings.npz", **emb)
    write_json(folder / HISTORY, history)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    files["embeddings.npz"] = {"arrays": {k: list(v.shape) for k, v in emb.items()}}
    files[HISTORY] = {}
    return files, {"student": desc, "history": history, "device": device.type,
                   "precision": "bf16" if use_bf16(cfg.precision, device) else "fp32",
                   "processes": distributed.world()}


def identity(cfg, base: Path, where: Callable[..., str]) -> dict:
    """What besides the config decides the student: the source file of each python-built student (a changed
    module must not reuse an old student)."""
    from mmcompress.artifact import sha256_file
    from mmcompress.models.entrypoint import _import

    out = {}
    for t, s in cfg.towers.items():
        if s.python:
            module, _ = _import(s.python, base, where("towers", t, "python"))
            file = getattr(module, "__file__", None)
            out[t] = sha256_file(Path(file)) if file else s.python
    return out
