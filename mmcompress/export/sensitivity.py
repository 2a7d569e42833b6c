"""How much each quantizable node of a tower's fp32 graph costs when it runs in int8.

The nodes are the MatMul/Gemm nodes with a weight (an initializer input): the ones the int8 variants convert.
Two measurements per node, each with ONNX Runtime's own quantizer on the real graph, on rows the caller
gives (the calibration split), against the fp32 graph's outputs on the same rows:

  alone        only this node in int8: the damage it does by itself
  leave-out    every other node in int8, this one float: how much of the full int8 damage it accounts for

Transformer towers have hundreds of nodes, so the search is coarse to fine: each encoder block alone first
(its nodes together), then node by node inside the `top_blocks` worst blocks, and leave-one-out for the
`top_nodes` worst nodes. Every ONNX node is mapped back to the PyTorch module it came from (the exporter's
`pkg.torch.onnx.name_scopes` metadata) so that a report can say `encoder.layer.1.attention.output.dense`.
"""
from __future__ import annotations

import ast
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

QUANTIZABLE = ("MatMul", "Gemm")
_BLOCK = re.compile(r"^(.*?\b(?:layers?|blocks?|h)\.\d+)(?:\.|$)")  # 'encoder.layer.3', 'vision_model.encoder.layers.0'


@dataclass
class Node:
    name: str          # ONNX node name
    op: str
    module: str        # the PyTorch module it was exported from ('' when the graph does not say)
    block: str         # the encoder block it belongs to ('' outside the blocks: embeddings, heads, projections)


@dataclass
class Sensitivity:
    tower: str
    method: str                                    # 'dynamic' or 'static'
    nodes: list[Node]
    full: dict                                     # every node in int8: {"mean", "min"} cosine to fp32
    blocks: dict[str, dict] = field(default_factory=dict)   # block alone -> cosine
    alone: dict[str, dict] = field(default_factory=dict)    # node -> cosine with only it in int8
    leave_out: dict[str, dict] = field(default_factory=dict)  # node -> cosine with all but it in int8
    seconds: float = 0.0

    def ranking(self) -> list[str]:
        """Node names, most harmful first: by leave-one-out gain where measured, then alone-damage, then the
        block's damage (nodes of unmeasured blocks keep graph order within their block)."""
        full = self.full["mean"]

        def score(n: Node) -> tuple:
            loo = self.leave_out.get(n.name)
            alone = self.alone.get(n.name)
            blk = self.blocks.get(n.block)
            return (-(loo["mean"] - full) if loo else 0.0, -(1 - alone["mean"]) if alone else 0.0,
                    -(1 - blk["mean"]) if blk else 0.0)
        return [n.name for n in sorted(self.nodes, key=score)]

    def to_json(self) -> dict:
        by_name = {n.name: n for n in self.nodes}
        rows = []
        for name in self.ranking():
            n = by_name[name]
            rows.append({"node": name, "op": n.op, "module": n.module, "block": n.block,
                         **({"alone": self.alone[name]} if name in self.alone else {}),
                         **({"leave_out": self.leave_out[name]} if name in self.leave_out else {})})
        return {"tower": self.tower, "method": self.method, "full_int8": self.full, "blocks": self.blocks,
                "nodes": rows, "seconds": round(self.seconds, 1)}


def module_of(node) -> str:
    """The PyTorch module path the exporter recorded for an ONNX node ('' when it did not), relative to the
    user's model: mmcompress's tower wrappers hold it as `.model`, and that prefix is dropped."""
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta.get("pkg.torch.onnx.name_scopes", "[]"))
        classes = ast.literal_eval(meta.get("pkg.torch.onnx.class_hierarchy", "[]"))
    except (ValueError, SyntaxError):
        return ""
    path = ""
    for s in scopes:  # module paths nest ('model', 'model.encoder', ...); the last entry is the op's own name
        if not path or s.startswith(path + "."):
            path = s
    if classes and str(classes[0]).startswith("mmcompress.") and path.startswith("model."):
        path = path[len("model."):]
    return path


def block_of(module: str) -> str:
    m = _BLOCK.match(module)
    return m.group(1) if m else ""


def quantizable(path: Path) -> list[Node]:
    """The MatMul/Gemm nodes of the graph at path that have a weight input, in graph order."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type in QUANTIZABLE and any(i in weights for i in n.input):
            module = module_of(n)
            out.append(Node(n.name, n.op_type, module, block_of(module)))
    return out


class Probe:
    """Quantizes the fp32 graph with a node subset and measures cosine to the fp32 outputs on fixed rows."""

    def __init__(self, src: Path, feeds: dict[str, np.ndarray], threads: int, quantize: Callable[..., None],
                 trim: bool = False, ref: np.ndarray | None = None):
        """ref: the fp32 graph's outputs on feeds, when the caller has them already."""
        from mmcompress.runtimes.base import run_batched
        from mmcompress.runtimes.onnxruntime import OrtSession

        self.src, self.feeds, self.threads, self.quantize, self.trim = src, feeds, threads, quantize, trim
        self._tmp = tempfile.TemporaryDirectory(prefix="mmcompress-sensitivity-")
        self.ref = run_batched(OrtSession(src, threads), feeds, trim=trim) if ref is None else ref
        self.calls = 0

    def outputs(self, include: list[str] | None = None, exclude: list[str] | None = None) -> np.ndarray:
        from mmcompress.runtimes.base import run_batched
        from mmcompress.runtimes.onnxruntime import OrtSession

        self.calls += 1
        dst = Path(self._tmp.name) / f"probe{self.calls}.onnx"
        self.quantize(self.src, dst, include=include, exclude=exclude or [])
        out = run_batched(OrtSession(dst, self.threads), self.feeds, trim=self.trim)
        dst.unlink()
        return out

    def cosine(self, include: list[str] | None = None, exclude: list[str] | None = None) -> dict:
        """Per-row cosine to the fp32 outputs: mean, min, p01, n (checks.fidelity, as the checks report it)."""
        from mmcompress.checks.fidelity import cosine_to_teacher

        return cosine_to_teacher(self.outputs(include, exclude), self.ref)

    def close(self) -> None:
        self._tmp.cleanup()


def analyse(probe: Probe, tower: str, method: str, top_blocks: int = 2, top_nodes: int = 8,
            progress: Callable[[int, int], None] | None = None) -> Sensitivity:
    """Coarse to fine (module docstring). progress(done, total) after each quantize-and-measure."""
    import time

    t0 = time.perf_counter()
    nodes = quantizable(probe.src)
    blocks: dict[str, list[str]] = {}
    for n in nodes:
        blocks.setdefault(n.block, []).append(n.name)
    named_blocks = {b: v for b, v in blocks.items() if b}
    loose = blocks.get("", [])  # outside the blocks: measured one by one
    # an upper estimate until the worst blocks are known, then exact
    total = 1 + len(named_blocks) + len(loose) + min(top_blocks, len(named_blocks)) * max(
        (len(v) for v in named_blocks.values()), default=0) + min(top_nodes, len(nodes))
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    s = Sensitivity(tower, method, nodes, probe.cosine())
    tick()
    for b, names in named_blocks.items():
        s.blocks[b] = probe.cosine(include=names)
        tick()
    worst = sorted(named_blocks, key=lambda b: s.blocks[b]["mean"])[:top_blocks]
    singles = loose + [n for b in worst for n in named_blocks[b]]
    total = done + len(singles) + min(top_nodes, len(nodes))
    for name in singles:
        s.alone[name] = probe.cosine(include=[name])
        tick()
    for name in s.ranking()[:top_nodes]:
        s.leave_out[name] = probe.cosine(exclude=[name])
        tick()
    s.seconds = time.perf_counter() - t0
    return s
