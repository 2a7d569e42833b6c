"""Students defined relative to the teacher: the same Hugging Face class with fewer layers and/or a narrower
width in one tower, initialised from the teacher's weights (DistilBERT-style: every k-th layer kept; width by
keeping the leading channels, whole attention heads and the leading MLP channels).

Works on CLIP-layout dual encoders (transformers' CLIPModel and SiglipModel, and the zoo teacher, a CLIPModel
with a conv stem): encoder layers at `<tower_model>.encoder.layers.<i>`, attention q/k/v/out projections,
two LayerNorms and an fc1/fc2 MLP. The other tower and the projection size stay the teacher's, so a student
image tower still speaks to the teacher's text embeddings (class prompts stay valid).

    student = shrink(teacher, "image", layers=2, width=0.75)   # (B, 3, H, W) -> same (B, D) embedding size
"""
from __future__ import annotations

import copy
import re

import torch
from torch import nn

from mmcompress.models.bundle import QUERY_TOWERS

# tower -> (sub-config attribute, sub-model attribute, projection attribute) of a CLIP-layout model
TOWERS = {"image": ("vision_config", "vision_model", "visual_projection"),
          "audio": ("audio_config", "audio_model", "audio_projection"),
          "text": ("text_config", "text_model", "text_projection")}
STAGED_AUDIO = {"clap"}  # audio towers built of stages of different widths (CLAP's HTSAT, a Swin transformer)
PACKED_QKV_HEAD = {"siglip", "siglip2"}  # vision towers pooled by nn.MultiheadAttention (in_proj_weight)
_LAYERS = re.compile(r"^((?:\w+\.)*?layers?)\.(\d+)\.")  # 'vision_model.encoder.layers.3.', 'encoder.layer.3.', 'layers.3.'


def dual(config) -> bool:
    """A dual encoder in CLIP's layout (one sub-config per tower: vision or audio, and text) rather than a
    single-tower model (ViT, BERT, AST)."""
    return hasattr(config, "text_config") and any(hasattr(config, TOWERS[t][0]) for t in QUERY_TOWERS)


def _sub_config(config, tower: str):
    return getattr(config, TOWERS[tower][0]) if dual(config) else config


def layers_prefix(model: nn.Module, tower: str) -> str:
    """'vision_model.encoder.layers' (CLIP, SigLIP), 'encoder.layer' (BERT) or 'layers' (ViT in transformers 5):
    where the tower's layers are."""
    want = TOWERS[tower][1] + "." if dual(model.config) else ""
    found = {m.group(1) for n in model.state_dict() if (m := _LAYERS.match(n)) and n.startswith(want)}
    if len(found) != 1:
        raise ValueError(f"cannot find one stack of encoder layers for the {tower} tower of "
                         f"{type(model).__name__} (found {sorted(found) or 'none'})")
    return found.pop()


def hidden_size(config, tower: str) -> int:
    return _sub_config(config, tower).hidden_size


def owns(config, tower: str, name: str) -> bool:
    """Whether parameter `name` belongs to `tower` (what distilling that tower trains)."""
    if not dual(config):
        return True
    _, sub_model, proj = TOWERS[tower]
    return name.startswith(sub_model + ".") or name.startswith(proj + ".")


def kept_layers(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layer indices a student of n_student layers starts from: evenly spaced, the last always kept
    (12 -> 6: 1, 3, 5, 7, 9, 11; 4 -> 2: 1, 3)."""
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"a student needs 1..{n_teacher} layers, got {n_student}")
    step = n_teacher / n_student
    return [round(step * (i + 1)) - 1 for i in range(n_student)]


def check(config, tower: str, layers: int | None, width: float) -> None:
    """ValueError with the fix when this teacher config cannot give that student (before any work)."""
    if tower == "audio" and getattr(config, "model_type", "") in STAGED_AUDIO:
        raise ValueError(f"the {config.model_type} audio tower (HTSAT) is a Swin transformer in stages of "
                         f"different widths, so dropping layers is not built for it; distil its text tower, or "
                         f"an AST audio tower (ASTModel, the sounds-clap zoo teacher)")
    sub = _sub_config(config, tower)
    n = sub.num_hidden_layers
    if layers is not None and not 1 <= layers <= n:
        raise ValueError(f"layers {layers}: the teacher's {tower} tower has {n} layers; keep 1..{n}")
    if width != 1.0:
        if not dual(config):
            raise ValueError(f"width {width}: a single-tower {config.model_type} model has no projection, so a "
                             f"narrower student would change the embedding size; keep width 1.0 and drop layers")
        if tower == "image" and getattr(config, "model_type", "") in PACKED_QKV_HEAD:
            raise ValueError(f"width {width}: the {config.model_type} image tower pools with an attention head whose "
                             f"q/k/v are packed in one matrix, which cannot be narrowed by slicing; keep width 1.0 "
                             f"and drop layers")
        heads = sub.num_attention_heads
        exact = heads * width
        if round(exact) < 1 or abs(exact - round(exact)) > 0.01:  # 12 heads x 0.67 = 8.04: close enough to 8
            raise ValueError(f"width {width} of {heads} heads is not a whole number of heads; choose a multiple "
                             f"of 1/{heads}")


def student_config(config, plan: dict[str, dict]):
    """A copy of `config` with each planned tower's layers and width changed ({tower: {layers, width}}). width
    scales hidden size, heads and MLP together, keeping the head size (192 hidden, 4 heads, 0.75 -> 144
    hidden, 3 heads of 48)."""
    cfg = copy.deepcopy(config)
    for tower, p in plan.items():
        layers, width = p.get("layers"), p.get("width", 1.0)
        check(config, tower, layers, width)
        sub = _sub_config(cfg, tower)
        if layers is not None:
            sub.num_hidden_layers = layers
        if width != 1.0:
            head = sub.hidden_size // sub.num_attention_heads
            sub.num_attention_heads = round(sub.num_attention_heads * width)
            sub.hidden_size = sub.num_attention_heads * head
            sub.intermediate_size = int(round(sub.intermediate_size * width))
    return cfg


def _teacher_name(name: str, prefixes: dict[str, list[int]]) -> str:
    """Student parameter name -> the teacher parameter it starts from (layer i -> layer keep[i])."""
    for prefix, keep in prefixes.items():
        if name.startswith(prefix + "."):
            rest = name[len(prefix) + 1:]
            i, _, tail = rest.partition(".")
            return f"{prefix}.{keep[int(i)]}.{tail}"
    return name


def init_from_teacher(student: nn.Module, teacher: nn.Module, prefixes: dict[str, list[int]],
                      skip=lambda name: False) -> None:
    """Copy every student tensor from the teacher's, cut to the student's shape by keeping the leading entries
    of each dimension: whole heads (q/k/v rows are head-major), leading hidden and MLP channels.
    prefixes: layer-stack prefix -> the teacher layers the student's layers start from; skip(name): tensors
    that keep their fresh initialisation (a tower trained from scratch)."""
    source = teacher.state_dict()
    with torch.no_grad():
        for name, t in student.state_dict().items():
            if skip(name):
                continue
            src = source[_teacher_name(name, prefixes)]
            if "in_proj" in name and src.shape != t.shape:  # q, k, v stacked in one matrix: a leading cut is wrong
                raise ValueError(f"{name}: packed q/k/v projections (e.g. SigLIP's attention-pooling head) cannot "
                                 f"be narrowed yet; keep width 1.0 for this tower")
            if src.dim() != t.dim() or any(s < d for s, d in zip(src.shape, t.shape)):
                raise ValueError(f"{name}: teacher shape {tuple(src.shape)} cannot be cut to {tuple(t.shape)}")
            t.copy_(src[tuple(slice(0, d) for d in t.shape)])


def shrink(teacher: nn.Module, plan: dict[str, dict], build=None) -> nn.Module:
    """The student of a Hugging Face teacher ({tower: {'layers': n, 'width': w, 'init': 'teacher'|'scratch'}}),
    initialised from it (a 'scratch' tower keeps the class's own random initialisation; the towers not planned
    are always the teacher's).

    build(config) -> an untrained model of the teacher's class (default: type(teacher)(config)); the zoo
    teacher passes its own builder, which adds the conv stem."""
    cfg = student_config(teacher.config, plan)
    prefixes = {}
    for tower in plan:
        n_teacher = _sub_config(teacher.config, tower).num_hidden_layers
        prefixes[layers_prefix(teacher, tower)] = kept_layers(n_teacher, _sub_config(cfg, tower).num_hidden_layers)
    student = (build or type(teacher))(cfg)
    scratch = [t for t, p in plan.items() if p.get("init", "teacher") == "scratch"]
    init_from_teacher(student, teacher, prefixes, skip=lambda n: any(owns(cfg, t, n) for t in scratch))
    return student.eval()
