"""Variants with a PyTorch runtime (`runtime: torch-cuda` / `torch-cpu`): no ONNX, the model itself cast to the
variant's precision. The stage saves the towers' weights at that precision (`weights.pt`, {tower: state dict},
tensors shared by towers stored once: the artifact's size and identity); the checks run the model cast the same
way on the runtime's device (runtimes/torch.py)."""
from __future__ import annotations

from pathlib import Path

from mmcompress.artifact import Artifact, owns

WEIGHTS = "weights.pt"  # {tower: state dict}; towers that share a model share its tensors in the file


def handle(variant, ctx) -> Artifact:
    """The variant handler (export.handlers) for runtimes that run the PyTorch model."""
    m = ctx.run.stage(f"variant {variant.name}", ctx.folder, {"config": variant.model_dump(exclude={"budgets"}),
                                                              "parents": {"model": ctx.model_key}},
                      lambda d: stage(variant, ctx.bundle, d))
    towers = {t: ctx.folder / WEIGHTS for t in ctx.bundle.towers}
    return Artifact(name=variant.name, variant=variant, model=ctx.model, towers=towers, manifest=m,
                    sha256={t: m["files"][WEIGHTS]["sha256"] for t in towers}, bundle=ctx.bundle)


def stage(variant, bundle, folder: Path) -> tuple[dict, dict]:
    import torch

    from mmcompress.artifact import atomic_path
    from mmcompress.runtimes.torch import DTYPES

    cast: dict[int, torch.Tensor] = {}  # id(tensor) -> its cast copy: towers sharing a model share the copy

    def at(v: torch.Tensor, dtype) -> torch.Tensor:
        key = (id(v), dtype)
        if key not in cast:
            cast[key] = (v.detach().to(dtype) if v.is_floating_point() else v.detach()).cpu()
        return cast[key]

    state, towers = {}, {}
    for tower, module in bundle.towers.items():
        precision = variant.quantize if owns(variant, tower) else "fp32"
        state[tower] = {k: at(v, DTYPES[precision]) for k, v in module.state_dict().items()}
        towers[tower] = {"precision": precision, "inputs": list(bundle.specs[tower].inputs)}
    out = folder / WEIGHTS
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return {out.name: {"format": "torch-state-dicts", "towers": towers}}, {
        "runtime": variant.runtime, "torch": torch.__version__,
        "note": "PyTorch eager, every parameter and buffer cast to the precision on the runtime's device"}
