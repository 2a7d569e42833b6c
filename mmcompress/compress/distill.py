"""Distillation: a smaller student learns the teacher's embeddings on the train split (docs/distillation.md).

    stages:
      - distill: {towers: {image: {layers: 2, width: 0.75}}, steps: 300}

The student of a Hugging Face or zoo teacher is the teacher's own class with fewer layers / a narrower
width (compress/students.py), saved with save_pretrained; a `python:` student is your module, saved as
safetensors. Towers not distilled stay the teacher's, so class prompts stay valid. What is distillation's own
is here (building, saving and loading the student); the loop is compress/training.py, the teacher's targets
compress/targets.py, the evaluator and the stage's ending compress/evaluation.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from torch import nn

from mmcompress.compress import hf_towers, students
from mmcompress.compress.evaluation import evaluator, finish
from mmcompress.compress.training import Student, teacher_scale, train
from mmcompress.errors import RecipeError
from mmcompress.models.bundle import Bundle

STUDENT = "student"  # the stage folder's sub-folder holding the student


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
        models = {id(hf_towers.hf_model(bundle.towers[t])) for t in plan}
        teacher_model = hf_towers.hf_model(bundle.towers[next(iter(plan))])
        if teacher_model is None or len(models) != 1:
            raise RecipeError(f"{where('towers')}: layers/width students need a Hugging Face or zoo teacher (this "
                              f"one is {bundle.source.get('kind')}); give the tower a `python:` student instead")
        try:
            hf_model = students.shrink(teacher_model, {t: {"layers": s.layers, "width": s.width, "init": s.init}
                                                       for t, s in plan.items()}, build=hf_towers.builder(bundle))
        except ValueError as e:
            raise RecipeError(f"{where('towers')}: {e}") from None
        for name, p in hf_model.named_parameters():
            p.requires_grad_(any(students.owns(hf_model.config, t, name) for t in plan))
        for t in plan:
            towers[t] = hf_towers.rewrap(bundle.towers[t], hf_model)
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
    m = hf_towers.hf_model(tower_module)
    if m is not None and students.dual(m.config):
        return sum(p.numel() for n, p in m.named_parameters() if students.owns(m.config, tower, n))
    return sum(p.numel() for p in tower_module.parameters())


def save(student: Student, hf_model, bundle: Bundle, folder: Path) -> dict:
    """Write the student: a save_pretrained directory (loadable without mmcompress) and/or one safetensors
    file per python-built tower. -> {relative file: {}} for the manifest."""
    from safetensors.torch import save_file
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # save_pretrained's shard bar would break into our progress output
    out = folder / STUDENT
    out.mkdir(parents=True, exist_ok=True)
    if hf_model is not None:
        src = hf_towers.hf_dir(bundle)
        model_out = out / hf_towers.st_layout(src, out) if src is not None else out
        hf_model.save_pretrained(model_out)
        hf_towers.save_preprocessing(bundle, model_out)
    for t, m in student.towers.items():
        if hf_model is None or hf_towers.hf_model(m) is not hf_model:
            save_file({k: v.contiguous() for k, v in m.state_dict().items()}, out / f"{t}.safetensors")
    return {str(p.relative_to(folder)): {} for p in sorted(out.rglob("*")) if p.is_file()}


def load(bundle: Bundle, cfg, folder: Path, base: Path, where: Callable[..., str]) -> Bundle:
    """The student a finished stage saved, rebuilt the way it was made and given its trained weights."""
    from safetensors.torch import load_file

    student, hf_model, _ = build(bundle, cfg, base, where)
    out = folder / STUDENT
    if hf_model is not None:
        model_dir = next(out.rglob("model*.safetensors")).parent
        if hf_towers.builder(bundle) is None:  # transformers' own loader: it maps checkpoint names to module names
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
        if hf_model is None or hf_towers.hf_model(m) is not hf_model:
            m.load_state_dict(load_file(out / f"{t}.safetensors"))
    return hf_towers.student_bundle(bundle, student, cfg.name, folder, STUDENT)


def run(parent: Bundle, cfg, ctx, folder: Path) -> tuple[dict, dict] | None:
    """Train the student of `parent` on the teacher's train-split outputs; rank 0 saves it with its eval
    embeddings (what its ONNX export is checked against) and the training history. Other ranks return None."""
    from mmcompress import distributed

    student, hf, desc = build(parent, cfg, ctx.recipe.base, ctx.where)
    history = train(student, cfg, parent, ctx.dataset.split("train"), ctx.targets, ctx.recipe.seed, ctx.threads,
                    folder, evaluator(ctx) if cfg.eval_every else None, teacher_scale(ctx.teacher))
    if not distributed.is_main():
        return None
    student.cpu()
    files, common = finish(student, parent, cfg, ctx, folder, save(student, hf, parent, folder), history)
    return files, {"student": desc, **common}


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
