"""Structured pruning: attention heads and MLP channels removed for real, then recovered by distillation.

    stages:
      - prune: {towers: {image: {heads: 0.25, mlp: 0.4}}, steps: 300}

1. Layers: every encoder layer of the tower whose attention and MLP follow one of the layouts below (CLIP and
   SigLIP towers, the zoo teacher, BERT-family, ViT-family as transformers 5 writes them), chosen by module-name patterns (patterns.py).
2. Importance per head and per MLP channel: `taylor`, (sum over the group of gradient x weight)^2 summed over
   train batches, the gradient of an instance-contrastive loss of the model's embeddings against the parent's
   own (its softmax is not one-hot at the start, so the gradient is not zero); or `magnitude`, the group's
   weight norm. Ranked per layer (`scope: layer`, the same share everywhere) or across layers (`global`).
3. Surgery: the q/k/v rows and output-projection columns of a removed head, the fc1 rows and fc2 columns of a
   removed channel are cut out; a removed head's or channel's only path to the output is through those
   columns, so the pruned model computes exactly what the unpruned one does with them zeroed (tested).
4. Recovery: the training loop distillation uses (compress/training.py: same losses, progress, checkpoints and
   resume) against the teacher's outputs on the train split.

Saved as safetensors + the model's config + pruning.json (kept heads and channels per layer): load() rebuilds
the parent's class, cuts it to those shapes and loads the weights; no pickles. Head counts per layer do not fit
the configs of CLIP or BERT (their head size is hidden / heads), so the shapes travel in pruning.json.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mmcompress.compress import hf_towers, students
from mmcompress.compress.evaluation import evaluator, finish
from mmcompress.compress.training import Student, batch_feeds, batch_rows, teacher_scale, train
from mmcompress.errors import RecipeError
from mmcompress.models.bundle import Bundle

SHAPES = "pruning.json"
MODEL = "model"


@dataclass(frozen=True)
class Layout:
    """Where a layer keeps its attention projections and MLP, relative to the layer module."""

    attention: str            # the module holding the head count
    q: str
    k: str
    v: str
    o: str
    fc1: str
    fc2: str
    heads_attr: str           # attention attribute with the number of heads
    head_dim_attr: str        # attention attribute with the size of one head
    all_heads_attr: str | None = None  # attention attribute with heads x head size, when it has one


LAYOUTS = {
    "clip": Layout("self_attn", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
                   "mlp.fc1", "mlp.fc2", "num_heads", "head_dim"),
    "bert": Layout("attention.self", "attention.self.query", "attention.self.key", "attention.self.value",
                   "attention.output.dense", "intermediate.dense", "output.dense", "num_attention_heads",
                   "attention_head_size", "all_head_size"),
    "vit": Layout("attention", "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj",
                  "mlp.fc1", "mlp.fc2", "num_attention_heads", "head_dim"),  # ViT-family in transformers 5
}


def layout_of(layer: nn.Module) -> str | None:
    """The name of the layout `layer` follows, or None when it is not a transformer layer mmcompress prunes."""
    for name, lay in LAYOUTS.items():
        try:
            mods = [layer.get_submodule(p) for p in (lay.q, lay.k, lay.v, lay.o, lay.fc1, lay.fc2)]
            att = layer.get_submodule(lay.attention)
        except AttributeError:
            continue
        if all(isinstance(m, nn.Linear) for m in mods) and hasattr(att, lay.heads_attr):
            return name
    return None


def find_layers(model: nn.Module, tower: str) -> dict[str, str]:
    """{layer module name: layout} of the tower's encoder layers, in order."""
    config = getattr(model, "config", None)
    out = {}
    for name, m in model.named_modules():
        if config is not None and students.dual(config) and not students.owns(config, tower, name + "."):
            continue
        kind = layout_of(m)
        if kind and not any(name.startswith(p + ".") for p in out):
            out[name] = kind
    return out


# ---- importance ------------------------------------------------------------------------------------------
def _head_rows(layer: nn.Module, lay: Layout) -> tuple[int, int]:
    att = layer.get_submodule(lay.attention)
    return getattr(att, lay.heads_attr), getattr(att, lay.head_dim_attr)


def _group_scores(layer: nn.Module, lay: Layout, per_element: Callable[[nn.Linear], tuple[torch.Tensor, torch.Tensor | None]]):
    """(head scores (H,), channel scores (I,)) from a per-element score of each Linear's weight and bias."""
    n_heads, hd = _head_rows(layer, lay)
    heads = torch.zeros(n_heads)
    for path in (lay.q, lay.k, lay.v):
        w, b = per_element(layer.get_submodule(path))
        rows = w.sum(1) + (b if b is not None else 0)
        heads += rows.reshape(n_heads, hd).sum(1)
    heads += per_element(layer.get_submodule(lay.o))[0].sum(0).reshape(n_heads, hd).sum(1)
    w1, b1 = per_element(layer.get_submodule(lay.fc1))
    channels = w1.sum(1) + (b1 if b1 is not None else 0) + per_element(layer.get_submodule(lay.fc2))[0].sum(0)
    return heads, channels


def magnitude(layers: dict[str, tuple[nn.Module, Layout]]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """L2 norm of each head's and channel's weights (q/k/v rows and output columns; fc1 rows and fc2 columns)."""
    sq = lambda m: (m.weight.detach().float() ** 2, None if m.bias is None else m.bias.detach().float() ** 2)
    return {n: tuple(s.sqrt() for s in _group_scores(layer, lay, sq)) for n, (layer, lay) in layers.items()}


def taylor(layers: dict[str, tuple[nn.Module, Layout]], step: Callable[[], torch.Tensor], batches: int,
           update=None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """First-order Taylor: per batch, (sum over the group of gradient x weight)^2, summed over `batches` calls of
    step() (which runs a forward pass and returns the loss)."""
    total = {n: None for n in layers}
    gw = lambda m: (m.weight.grad.float() * m.weight.detach().float(),
                    None if m.bias is None else m.bias.grad.float() * m.bias.detach().float())
    for i in range(batches):
        for layer, _ in layers.values():
            layer.zero_grad(set_to_none=False)
        step().backward()
        for n, (layer, lay) in layers.items():
            h, c = _group_scores(layer, lay, gw)
            total[n] = (h ** 2, c ** 2) if total[n] is None else (total[n][0] + h ** 2, total[n][1] + c ** 2)
        if update:
            update(i + 1)
    return total


# ---- what to keep ----------------------------------------------------------------------------------------
def _round(n: int, to: int, top: int) -> int:
    return int(min(top, max(to, round(n / to) * to))) if top >= to else top


def choose(scores: dict[str, tuple[torch.Tensor, torch.Tensor]], heads: float, mlp: float, scope: str,
           round_to: int) -> dict[str, dict]:
    """{layer: {"heads": kept head indices, "channels": kept channel indices}}: the lowest-scored shares removed,
    per layer or ranked across layers (each layer's scores divided by their sum first); at least one head and
    `round_to` channels stay in every layer; kept channels rounded to a multiple of round_to."""
    keep_h, keep_c = {}, {}
    if scope == "layer":
        for n, (h, c) in scores.items():
            keep_h[n] = max(1, len(h) - int(round(heads * len(h))))
            keep_c[n] = _round(len(c) - int(round(mlp * len(c))), round_to, len(c))
    else:
        for part, share, out, low in ((0, heads, keep_h, 1), (1, mlp, keep_c, round_to)):
            norm = {n: s[part] / s[part].sum().clamp(min=1e-12) for n, s in scores.items()}
            kept = {n: len(v) for n, v in norm.items()}
            drop = int(round(share * sum(kept.values())))
            for _, n, _ in sorted((float(v), n, i) for n, vec in norm.items() for i, v in enumerate(vec)):
                if drop == 0:
                    break
                if kept[n] > min(low, len(norm[n])):  # lowest first, a layer's minimum respected
                    kept[n] -= 1
                    drop -= 1
            for n, k in kept.items():
                out[n] = k if part == 0 else _round(k, round_to, len(norm[n]))
    out = {}
    for n, (h, c) in scores.items():
        out[n] = {"heads": sorted(torch.argsort(h, descending=True)[:keep_h[n]].tolist()),
                  "channels": sorted(torch.argsort(c, descending=True)[:keep_c[n]].tolist()),
                  "heads_before": len(h), "channels_before": len(c)}
    return out


# ---- 2:4 semi-structured sparsity -------------------------------------------------------------------------
def sparse_24(layers: list[nn.Module], layouts: list[Layout]) -> list[tuple[nn.Linear, torch.Tensor]]:
    """Zero the 2 smaller-magnitude weights of every 4 consecutive inputs of each attention and MLP Linear of
    `layers` (in place). -> [(linear, keep mask)]: recovery re-applies the masks after every step."""
    out = []
    with torch.no_grad():
        for layer, lay in zip(layers, layouts):
            for path in (lay.q, lay.k, lay.v, lay.o, lay.fc1, lay.fc2):
                lin = layer.get_submodule(path)
                w = lin.weight
                if w.shape[1] % 4:
                    continue  # the pattern needs whole groups of 4 inputs
                groups = w.abs().reshape(w.shape[0], -1, 4)
                keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, groups.topk(2, dim=-1).indices, True)
                keep = keep.reshape(w.shape)
                w.mul_(keep)
                out.append((lin, keep))
    return out


def hold(masks: list[tuple[nn.Linear, torch.Tensor]]) -> None:
    """Re-apply 2:4 masks (after an optimizer step moved the zeroed weights)."""
    with torch.no_grad():
        for lin, keep in masks:
            lin.weight.mul_(keep.to(lin.weight.device))


# ---- surgery ---------------------------------------------------------------------------------------------
def _cut(lin: nn.Linear, rows: list[int] | None = None, cols: list[int] | None = None) -> nn.Linear:
    w = lin.weight.detach()
    b = None if lin.bias is None else lin.bias.detach()
    if rows is not None:
        w, b = w[rows], (None if b is None else b[rows])
    if cols is not None:
        w = w[:, cols]
    new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if b is not None:
            new.bias.copy_(b)
    return new


def _set(layer: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(layer.get_submodule(parent) if parent else layer, leaf, module)


def cut_layer(layer: nn.Module, lay: Layout, heads: list[int], channels: list[int]) -> None:
    """Remove every head not in `heads` and every MLP channel not in `channels` from `layer`, in place."""
    n_heads, hd = _head_rows(layer, lay)
    rows = [h * hd + j for h in heads for j in range(hd)]
    for path in (lay.q, lay.k, lay.v):
        _set(layer, path, _cut(layer.get_submodule(path), rows=rows))
    _set(layer, lay.o, _cut(layer.get_submodule(lay.o), cols=rows))
    _set(layer, lay.fc1, _cut(layer.get_submodule(lay.fc1), rows=channels))
    _set(layer, lay.fc2, _cut(layer.get_submodule(lay.fc2), cols=channels))
    att = layer.get_submodule(lay.attention)
    setattr(att, lay.heads_attr, len(heads))
    if lay.all_heads_attr:
        setattr(att, lay.all_heads_attr, len(heads) * hd)


def apply(model: nn.Module, shapes: dict[str, dict], dropped: dict[str, list[str]] | None = None) -> None:
    """Cut `model` (in place) to `shapes` ({layer: {"heads": [...], "channels": [...]}}), then remove the layers
    `dropped` names ({tower: [layer names]}, names as before any removal)."""
    for name, s in shapes.items():
        layer = model.get_submodule(name)
        cut_layer(layer, LAYOUTS[layout_of(layer)], s["heads"], s["channels"])
    for tower, names in (dropped or {}).items():
        drop_layers(model, tower, names)


def drop_layers(model: nn.Module, tower: str, names: list[str]) -> None:
    """Remove whole layers (by module name) from their ModuleList, in place; the tower's config follows."""
    stacks: dict[str, set[int]] = {}
    for name in names:
        parent, _, index = name.rpartition(".")
        stacks.setdefault(parent, set()).add(int(index))
    for parent, gone in stacks.items():
        old = model.get_submodule(parent)
        kept = nn.ModuleList([m for i, m in enumerate(old) if i not in gone])
        _set(model, parent, kept)
        config = getattr(model, "config", None)
        if config is not None:
            sub = students._sub_config(config, tower)
            if hasattr(sub, "num_hidden_layers"):
                sub.num_hidden_layers = len(kept)


def zeroed(model: nn.Module, shapes: dict[str, dict]) -> nn.Module:
    """A copy of the unpruned model with the removed heads' output columns and the removed channels' fc2
    columns zeroed: what the pruned model must compute (the surgery's reference)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for name, s in shapes.items():
            layer = out.get_submodule(name)
            lay = LAYOUTS[layout_of(layer)]
            n_heads, hd = _head_rows(layer, lay)
            gone = [h * hd + j for h in range(n_heads) if h not in s["heads"] for j in range(hd)]
            layer.get_submodule(lay.o).weight[:, gone] = 0
            fc2 = layer.get_submodule(lay.fc2)
            fc2.weight[:, [c for c in range(fc2.in_features) if c not in set(s["channels"])]] = 0
    return out


def count(model: nn.Module, tower: str) -> dict:
    """Parameters of the tower (its own, in a dual encoder) and its heads and MLP channels."""
    config = getattr(model, "config", None)
    params = sum(p.numel() for n, p in model.named_parameters()
                 if config is None or not students.dual(config) or students.owns(config, tower, n))
    heads = channels = 0
    for name, kind in find_layers(model, tower).items():
        layer = model.get_submodule(name)
        heads += _head_rows(layer, LAYOUTS[kind])[0]
        channels += layer.get_submodule(LAYOUTS[kind].fc1).out_features
    return {"parameters": params, "heads": heads, "mlp_channels": channels}


# ---- the stage -------------------------------------------------------------------------------------------
def _model(parent: Bundle, cfg, where) -> nn.Module:
    """The one model module behind the towers the stage prunes (a dual encoder's towers share it)."""
    for t in cfg.towers:
        if t not in parent.towers:
            raise RecipeError(f"{where('towers', t)}: the model has no {t} tower (it has {', '.join(parent.towers)})")
    mods = {id(hf_towers.hf_model(parent.towers[t]) or parent.towers[t]) for t in cfg.towers}
    if len(mods) != 1:
        raise RecipeError(f"{where('towers')}: the towers named are separate modules; prune them in two stages")
    t = next(iter(cfg.towers))
    return hf_towers.hf_model(parent.towers[t]) or parent.towers[t]


def _layers(model: nn.Module, cfg, where) -> tuple[dict[str, dict[str, tuple[nn.Module, Layout]]], dict[str, list[str]]]:
    """({tower: {layer name: (layer, layout)}} whose heads and channels are cut, {tower: [layers removed whole]})."""
    from mmcompress.patterns import select

    out, dropped = {}, {}
    for t, p in cfg.towers.items():
        found = find_layers(model, t)
        if not found:
            raise RecipeError(f"{where('towers', t)}: no encoder layer of the {t} tower has an attention and MLP "
                              f"layout mmcompress can prune (CLIP/SigLIP q_proj..fc2, BERT or ViT query..output."
                              f"dense); module names start {', '.join(n for n, _ in list(model.named_modules())[1:4])}")
        gone = select(list(found), p.drop_layers, where("towers", t, "drop_layers")) if p.drop_layers else []
        if p.drop_layers and not gone:
            raise RecipeError(f"{where('towers', t, 'drop_layers')}: the patterns choose none of the {t} tower's "
                              f"layers ({', '.join(list(found)[:2])}, ...)")
        if len(gone) == len(found):
            raise RecipeError(f"{where('towers', t, 'drop_layers')}: the patterns choose all {len(found)} layers of "
                              f"the {t} tower; at least one must stay")
        chosen = select(list(found), p.layers, where("towers", t, "layers")) if p.layers else list(found)
        if p.cuts and not chosen:
            raise RecipeError(f"{where('towers', t, 'layers')}: the patterns choose none of the {t} tower's layers "
                              f"({', '.join(list(found)[:2])}, ...)")
        out[t] = {n: (model.get_submodule(n), LAYOUTS[found[n]]) for n in chosen if n not in gone}
        dropped[t] = gone
    return out, dropped


def _importance(model: nn.Module, parent: Bundle, cfg, layers: dict, ctx) -> dict:
    """{tower: {layer: (head scores, channel scores)}}."""
    from mmcompress.progress import bar

    if cfg.importance == "magnitude":
        return {t: magnitude(ls) for t, ls in layers.items() if cfg.towers[t].cuts}
    layers = {t: ls for t, ls in layers.items() if cfg.towers[t].cuts}  # others: no scores
    split = ctx.dataset.split("train")
    out = {}
    batch = min(cfg.batch, len(split))
    scale = teacher_scale(ctx.teacher)
    for t, ls in layers.items():
        tower = parent.towers[t]
        names = list(parent.specs[t].inputs)
        state = {"i": 0}

        def step(t=t, tower=tower, names=names, state=state):
            rows = batch_rows(state["i"], batch, len(split), ctx.recipe.seed)
            state["i"] += 1
            feeds = batch_feeds(parent, split, rows, [t])[t]
            s = nn.functional.normalize(tower(*[torch.from_numpy(feeds[k]) for k in names]).float(), dim=-1)
            target = nn.functional.normalize(torch.from_numpy(ctx.targets[t][rows]).float(), dim=-1)
            return nn.functional.cross_entropy(s @ target.T * scale, torch.arange(len(rows)))

        with torch.enable_grad(), bar(f"taylor importance of the {t} tower's heads and channels",
                                      cfg.importance_batches) as update:
            model.train()
            for p in model.parameters():
                p.requires_grad_(True)
            out[t] = taylor(ls, step, cfg.importance_batches, update)
            model.eval()
            model.zero_grad(set_to_none=True)
    return out


def macs(tower: nn.Module, feeds: dict[str, np.ndarray], names: list[str]) -> int:
    """Multiply-accumulates of one forward of the tower on `feeds` (PyTorch's FLOP counter: matmuls,
    convolutions and attention; FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        tower(*[torch.from_numpy(np.ascontiguousarray(feeds[k])) for k in names])
    return int(counter.get_total_flops() // 2)


def share_for_macs(model: nn.Module, tower_of: Callable[[nn.Module], nn.Module], one: dict, names: list[str],
                   scores: dict, dropped: dict[str, list[str]], cfg, keep: float, total: int, steps: int = 12) -> float:
    """The smallest share of heads and MLP channels (removed alike) whose cut keeps at most `keep` of the tower's
    MACs per sample, by bisection on trial cuts of copies of `model` (tower_of(copy): the tower module around a
    copy), with the layers `dropped` names removed too; at least one head and round_to channels stay in every
    layer, so a target below what that allows ends at the largest share (0.95)."""
    lo, hi = 0.0, 0.95
    for _ in range(steps):
        mid = (lo + hi) / 2
        trial = copy.deepcopy(model)
        apply(trial, choose(scores, mid, mid, cfg.scope, cfg.round_to), dropped)
        if macs(tower_of(trial), one, names) / total > keep:
            lo = mid
        else:
            hi = mid
    return hi


def prune_model(parent: Bundle, cfg, ctx) -> tuple[nn.Module, dict, dict, list]:
    """-> (a pruned copy of the parent's model, {"layers": {layer: kept heads/channels}, "dropped": {tower:
    [layers removed]}} (pruning.json), description, [(Linear, 2:4 keep mask)] recovery must hold)."""
    from mmcompress.runtimes.base import trim_padding

    model = _model(parent, cfg, ctx.where)
    work = copy.deepcopy(model)
    copied = hf_towers.rewrapped(parent, model, work)
    layers, dropped = _layers(work, cfg, ctx.where)
    scores = _importance(work, copied, cfg, layers, ctx)
    shapes, desc, masks = {}, {"towers": {}}, []
    for t, p in cfg.towers.items():
        one = {k: v[:1] for k, v in ctx.inputs.feeds[t].items()}  # one eval row: MACs per sample
        one = trim_padding(one) if ctx.inputs.trim[t] else one
        names = list(parent.specs[t].inputs)
        before = {**count(work, t), "macs": macs(copied.towers[t], one, names)}
        heads, mlp = p.heads, p.mlp
        if p.macs is not None:
            heads = mlp = share_for_macs(work, lambda m: hf_towers.rewrapped(copied, work, m).towers[t], one, names,
                                         scores[t], {t: dropped[t]}, cfg, p.macs, before["macs"])
        chosen = choose(scores[t], heads, mlp, cfg.scope, cfg.round_to) if t in scores else {}
        apply(work, chosen, {t: dropped[t]})
        shapes.update(chosen)
        tower_masks = sparse_24([layer for layer, _ in layers[t].values()],
                                [lay for _, lay in layers[t].values()]) if p.sparsity == "2:4" else []
        masks += tower_masks
        after = {**count(work, t), "macs": macs(copied.towers[t], one, names)}
        if p.sparsity == "2:4":
            after["sparsity"] = {"pattern": "2:4", "weights_zeroed": int(sum((~m).sum() for _, m in tower_masks)),
                                 "note": "the matrices keep their size: ONNX Runtime and PyTorch on CPU run them at "
                                         "dense speed; the gain needs a GPU runtime with sparse kernels (TensorRT "
                                         "sparse tactics on Ampere or newer)"}
        if p.macs is not None:
            after["macs_target"] = {"keep": p.macs, "share_removed": round(heads, 4),
                                    "kept": round(after["macs"] / before["macs"], 4)}
        desc["towers"][t] = {"before": before, "after": after, "importance": cfg.importance, "scope": cfg.scope,
                             "dropped_layers": dropped[t], "layers": {
            n: {"heads": f"{len(s['heads'])}/{s['heads_before']}", "mlp": f"{len(s['channels'])}/{s['channels_before']}"}
            for n, s in chosen.items()}}
    return work, {"layers": shapes, "dropped": dropped}, desc, masks


def _student(parent: Bundle, cfg, pruned: nn.Module, model: nn.Module, dropped: dict[str, list[str]],
             where) -> Student:
    """The pruned towers as distillation's Student; only their own parameters train. With `losses.hidden`, each
    pruned layer's output is matched (through a learned projection, as distillation does) to the output of
    the unpruned layer it came from."""
    bundle = hf_towers.rewrapped(parent, model, pruned)
    config = getattr(pruned, "config", None)
    for name, p in pruned.named_parameters():
        p.requires_grad_(config is None or not students.dual(config)
                         or any(students.owns(config, t, name) for t in cfg.towers))
    student = Student({t: bundle.towers[t] for t in cfg.towers}, {t: list(parent.specs[t].inputs) for t in cfg.towers})
    if cfg.losses.hidden:
        for t in cfg.towers:
            try:
                prefix = students.layers_prefix(model, t)
            except (AttributeError, ValueError) as e:
                raise RecipeError(f"{where('losses', 'hidden')}: hidden-state matching needs a Hugging Face or zoo "
                                  f"model's layer stack ({e}); set it to 0") from None
            gone = {int(n.rpartition(".")[2]) for n in dropped.get(t, []) if n.startswith(prefix + ".")}
            keep = [i for i in range(len(model.get_submodule(prefix))) if i not in gone]
            d = students.hidden_size(config, t)
            student.match_hidden(t, pruned.get_submodule(prefix), parent.towers[t], model.get_submodule(prefix),
                                 keep, d, d)
    return student


def save(pruned: nn.Module, shapes: dict, parent: Bundle, folder: Path) -> dict:
    """folder/model: model.safetensors (the pruned weights, module names), config.json (the parent's), the
    tokenizer and image processor files, pruning.json (the shapes). -> manifest file entries."""
    from safetensors.torch import save_file

    out = folder / MODEL
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in pruned.state_dict().items()}, out / "model.safetensors")
    if hasattr(pruned, "config") and hasattr(pruned.config, "save_pretrained"):
        pruned.config.save_pretrained(out)
    hf_towers.save_preprocessing(parent, out)
    (out / SHAPES).write_text(json.dumps(shapes, indent=1))
    return {str(p.relative_to(folder)): {} for p in sorted(out.rglob("*")) if p.is_file()}


def rebuild(model: nn.Module, folder: Path) -> nn.Module:
    """A copy of the unpruned `model` cut to folder/model/pruning.json's shapes, with the saved weights."""
    from safetensors.torch import load_file

    out = copy.deepcopy(model)
    shapes = json.loads((Path(folder) / MODEL / SHAPES).read_text())
    apply(out, shapes["layers"], shapes["dropped"])
    missing, unexpected = out.load_state_dict(load_file(Path(folder) / MODEL / "model.safetensors"), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"{folder / MODEL}: weights do not match the pruned model: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    return out.eval()


def run(parent: Bundle, cfg, ctx, folder: Path) -> tuple[dict, dict] | None:
    """Prune the parent's towers, recover them by distillation, save the model with its eval embeddings."""
    from mmcompress import distributed

    model = _model(parent, cfg, ctx.where)
    pruned, shapes, desc, masks = prune_model(parent, cfg, ctx)
    student = _student(parent, cfg, pruned, model, shapes["dropped"], ctx.where)
    history, evaluate = [], evaluator(ctx)
    if distributed.is_main():
        desc["eval_pruned"] = evaluate(student.eval())  # before recovery: what the cut alone cost
    if cfg.steps:
        history = train(student, cfg, parent, ctx.dataset.split("train"), ctx.targets, ctx.recipe.seed, ctx.threads,
                        folder, evaluate if cfg.eval_every else None, teacher_scale(ctx.teacher),
                        title="recovering the pruned", after_step=(lambda: hold(masks)) if masks else None)
    if not distributed.is_main():
        return None
    student.cpu()
    files, common = finish(student, parent, cfg, ctx, folder, save(pruned, shapes, parent, folder), history)
    return files, {"pruning": desc, **common}


def load(parent: Bundle, cfg, folder: Path, base: Path, where: Callable[..., str]) -> Bundle:
    """The pruned model a finished stage saved, rebuilt from the parent's class and given its weights."""
    model = _model(parent, cfg, where)
    pruned = rebuild(model, folder)
    bundle = hf_towers.rewrapped(parent, model, pruned)
    student = Student({t: bundle.towers[t] for t in cfg.towers}, {t: list(parent.specs[t].inputs) for t in cfg.towers})
    return hf_towers.student_bundle(parent, student, cfg.name, folder, MODEL)


def identity(cfg, base: Path, where: Callable[..., str]) -> dict:
    return {}
