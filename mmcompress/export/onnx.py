"""One ONNX graph per tower, dynamic batch (and sequence for text), parity-checked against PyTorch.

Audio towers take the feature extractor's output: for a fixed-window model every eval clip, whatever its length,
arrives padded or cut to the window, so parity on the eval inputs is parity at the window; the manifest records
the clips' lengths and how many were longer than the window."""
from __future__ import annotations

import io
import logging
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from mmcompress.checks.fidelity import cosine_rows
from mmcompress.errors import StageError, os_problem
from mmcompress.models.bundle import TowerSpec

OUTPUT_NAME = "embeddings"


def _example(spec: TowerSpec, feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    # batch 2 so that the exporter does not specialise the batch axis to 1
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[name][:2])) for name in spec.inputs)


def export_tower(module: torch.nn.Module, spec: TowerSpec, feeds: dict[str, np.ndarray], out: Path, *, opset: int,
                 exporter: str) -> None:
    """Write module as ONNX to `out`. feeds: real preprocessed inputs (N >= 2) used as the example."""
    args = _example(spec, feeds)
    names = list(spec.inputs)
    module.eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            dynamic_shapes = {n: {ax: torch.export.Dim.DYNAMIC for ax in axes} for n, axes in spec.inputs.items()}
            prog = torch.onnx.export(module, args, dynamo=True, opset_version=opset, input_names=names,
                                     output_names=[OUTPUT_NAME], dynamic_shapes=dynamic_shapes, verbose=False)
            prog.save(str(out))
        else:
            dynamic_axes = {n: dict(axes) for n, axes in spec.inputs.items()}
            dynamic_axes[OUTPUT_NAME] = {0: "batch"}
            torch.onnx.export(module, args, str(out), dynamo=False, opset_version=opset, input_names=names,
                              output_names=[OUTPUT_NAME], dynamic_axes=dynamic_axes)


def input_spec(path: Path) -> dict:
    """{input name: {'dtype': ..., 'shape': [dim or axis name]}} read back from the graph."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for vi in list(model.graph.input) + list(model.graph.output):
        t = vi.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        out[vi.name] = {"dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}
    return out


def parity(candidate: np.ndarray, reference: np.ndarray, *, max_abs: float, min_cosine: float, what: str) -> dict:
    """Compare ONNX outputs with PyTorch's on the same inputs; raise StageError beyond tolerance."""
    diff = float(np.abs(candidate - reference).max())
    if reference.ndim == 2 and reference.shape[1] == 1:  # one score per row: compare the score vectors
        candidate, reference = candidate.T, reference.T
    cos = cosine_rows(candidate, reference)
    facts = {"max_abs_diff": diff, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
             "samples": int(len(cos))}
    if not np.isfinite(diff) or diff > max_abs or cos.min() < min_cosine:
        raise StageError(f"{what}: ONNX output does not match PyTorch: max |diff| {diff:.3g} (allowed "
                         f"{max_abs:g}), min cosine {cos.min():.6f} (allowed {min_cosine:g}). Try "
                         f"export.onnx.exporter: torchscript, or report the model to the mmcompress issue tracker.")
    return facts


def stage(bundle, cfg, inputs, teacher_emb: dict[str, np.ndarray], folder: Path, parity_rows: int = 256) -> tuple[dict, dict]:
    """Export every tower of the bundle into folder/<tower>.onnx and check parity on real eval inputs.

    cfg: recipe.OnnxConfig; teacher_emb: the teacher's embeddings of the same eval inputs.
    """
    from mmcompress.artifact import atomic_path
    from mmcompress.checks.latency import feeds_at
    from mmcompress.runtimes.base import EVAL_BATCH, run_batched
    from mmcompress.runtimes.onnxruntime import OrtSession
    from mmcompress.runtimes.torch import TorchSession

    files = {}
    from mmcompress.models.clip import export_form

    for tower, module in bundle.towers.items():
        module = export_form(module, cfg.pooled_tokens_only)
        feeds = {k: v[:parity_rows] for k, v in inputs.feeds[tower].items()}
        out = folder / f"{tower}.onnx"
        with atomic_path(out) as tmp:
            try:
                export_tower(module, bundle.specs[tower], feeds, tmp, opset=cfg.opset, exporter=cfg.exporter)
            except Exception as e:
                disk = os_problem(e, folder)
                if disk is not None:  # not the exporter's fault: no advice about exporters
                    raise disk from e
                raise StageError(f"export-onnx: the {tower} tower did not export with the {cfg.exporter} exporter: "
                                 f"{type(e).__name__}: {str(e).splitlines()[0][:300]}. Try export.onnx.exporter: "
                                 f"{'torchscript' if cfg.exporter == 'dynamo' else 'dynamo'}") from e
            sess = OrtSession(tmp, threads=1)
            trim = inputs.trim[tower]
            got = run_batched(sess, feeds, trim=trim)  # each batch at its own longest row, as the teacher ran
            facts = parity(got, teacher_emb[tower][:parity_rows], max_abs=cfg.parity_max_abs,
                           min_cosine=cfg.parity_min_cosine, what=f"export-onnx {tower} tower")
            if trim:  # the lengths run_batched's batches were cut to (tokens; samples for audio)
                mask = feeds["attention_mask"]
                facts["lengths"] = sorted({int(mask[i:i + EVAL_BATCH].sum(1).max()) for i in range(0, len(mask), EVAL_BATCH)})
            if trim and tower != "audio":  # and padded to the model's limit: the graph must hold at every length
                long = feeds_at(feeds, min(32, len(mask)), bundle.text_preprocess.max_length,
                                bundle.text_preprocess.pad_id)
                ref = TorchSession(module, list(bundle.specs[tower].inputs)).run(long)
                facts["padded_to_max"] = parity(sess.run(long), ref, max_abs=cfg.parity_max_abs,
                                                min_cosine=cfg.parity_min_cosine,
                                                what=f"export-onnx {tower} tower at {long['input_ids'].shape[1]} tokens")
            elif trim:  # audio of any length: and each clip alone at its own length (no padding at all)
                one = {k: v[:32] for k, v in feeds.items()}
                ref = run_batched(TorchSession(module, list(bundle.specs[tower].inputs)), one, batch=1, trim=True)
                facts["each_at_own_length"] = parity(run_batched(sess, one, batch=1, trim=True), ref,
                                                     max_abs=cfg.parity_max_abs, min_cosine=cfg.parity_min_cosine,
                                                     what=f"export-onnx {tower} tower, each clip at its own length")
                facts["each_at_own_length"]["samples_range"] = [int(one["attention_mask"].sum(1).min()),
                                                                int(one["attention_mask"].sum(1).max())]
        if tower == "audio" and inputs.clip_seconds is not None:
            facts["clips"] = bundle.audio_preprocess.clips(inputs.clip_seconds)
        if tower == "fusion":  # image and text in one graph: the text settings, with the image's under "image"
            pre_dict = {**bundle.text_preprocess.to_dict(), "image": bundle.image_preprocess.to_dict()}
        else:
            pre = bundle.preprocess(tower)
            pre_dict = pre.to_dict() if pre else None
        files[out.name] = {"tower": tower, "format": "onnx", "precision": "fp32", "io": input_spec(out),
                           "module": type(module).__name__, "parity": facts, "preprocess": pre_dict}
    return files, {"exporter": cfg.exporter, "opset": cfg.opset, "teacher": bundle.source}
