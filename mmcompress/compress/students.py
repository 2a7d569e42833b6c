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

# tower -> (sub-config attribute, sub-model attribute) of a CLIP-layout model
TOWERS = {"image": ("vision_config", "vision_model"), "text": ("text_config", "text_model")}


def kept_layers(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layer indices a student of n_student layers starts from: evenly spaced, the last always kept
    (12 -> 6: 1, 3, 5, 7, 9, 11; 4 -> 2: 1, 3)."""
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"a student needs 1..{n_teacher} layers, got {n_student}")
    step = n_teacher / n_student
    return [round(step * (i + 1)) - 1 for i in range(n_student)]


def student_config(config, tower: str, layers: int | None = None, width: float = 1.0):
    """A copy of `config` with the tower's layers and width changed. width scales hidden size, heads and MLP
    together, keeping the head size (192 hidden, 4 heads, 0.75 -> 144 hidden, 3 heads of 48)."""
    sub_name, _ = TOWERS[tower]
    cfg = copy.deepcopy(config)
    sub = getattr(cfg, sub_name)
    if layers is not None:
        sub.num_hidden_layers = layers
    if width != 1.0:
        head = sub.hidden_size // sub.num_attention_heads
        exact = sub.num_attention_heads * width
        heads = round(exact)
        if heads < 1 or abs(exact - heads) > 0.01:  # 12 heads x 0.67 = 8.04 heads: close enough to 8
            raise ValueError(f"width {width} of {sub.num_attention_heads} heads of {head} is not a whole number of "
                             f"heads; choose a width that is a multiple of 1/{sub.num_attention_heads}")
        sub.num_attention_heads = heads
        sub.hidden_size = heads * head
        sub.intermediate_size = int(round(sub.intermediate_size * width))
    return cfg


def _teacher_name(name: str, sub_model: str, keep: list[int]) -> str:
    """Student parameter name -> the teacher parameter it starts from (layer i -> layer keep[i])."""
    pattern = rf"^({re.escape(sub_model)}\.encoder\.layers\.)(\d+)\."
    return re.sub(pattern, lambda m: f"{m.group(1)}{keep[int(m.group(2))]}.", name)


def init_from_teacher(student: nn.Module, teacher: nn.Module, tower: str, keep: list[int]) -> None:
    """Copy every student tensor from the teacher's, cut to the student's shape by keeping the leading entries
    of each dimension: whole heads (q/k/v rows are head-major), leading hidden and MLP channels."""
    _, sub_model = TOWERS[tower]
    source = teacher.state_dict()
    with torch.no_grad():
        for name, t in student.state_dict().items():
            src = source[_teacher_name(name, sub_model, keep)]
            if "in_proj" in name and src.shape != t.shape:  # q, k, v stacked in one matrix: a leading cut is wrong
                raise ValueError(f"{name}: packed q/k/v projections (e.g. SigLIP's attention-pooling head) cannot "
                                 f"be narrowed yet; keep width 1.0 for this tower")
            if src.dim() != t.dim() or any(s < d for s, d in zip(src.shape, t.shape)):
                raise ValueError(f"{name}: teacher shape {tuple(src.shape)} cannot be cut to {tuple(t.shape)}")
            t.copy_(src[tuple(slice(0, d) for d in t.shape)])


def shrink(teacher: nn.Module, tower: str, layers: int | None = None, width: float = 1.0,
           build=None) -> nn.Module:
    """The student for one tower of a CLIP-layout teacher, initialised from it.

    build(config) -> an untrained model of the teacher's class (default: type(teacher)(config)); the zoo
    teacher passes its own builder, which adds the conv stem."""
    sub_name, _ = TOWERS[tower]
    n_teacher = getattr(teacher.config, sub_name).num_hidden_layers
    cfg = student_config(teacher.config, tower, layers, width)
    keep = kept_layers(n_teacher, getattr(cfg, sub_name).num_hidden_layers)
    student = (build or type(teacher))(cfg)
    init_from_teacher(student, teacher, tower, keep)
    return student.eval()
