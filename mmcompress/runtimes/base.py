"""One interface for every runtime: a Runtime opens Sessions, a Session maps numpy feeds to the (N, D) output."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

# one implementation for the run and for the board-side check (checks/board_check.py ships in every bundle)
from mmcompress.checks.board_check import EVAL_BATCH, run_batched, trim_padding  # noqa: F401

if TYPE_CHECKING:
    from mmcompress.artifact import Artifact


class Session(Protocol):
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """feeds: input name -> array (batch first). Returns float32 (N, D)."""
        ...


class Runtime:
    """One entry of the runtimes registry (runtimes/__init__.py). Subclasses set `name` and implement
    `session`; the rest has defaults for a runtime that runs ONNX graphs on this CPU."""

    name: str = ""
    runs: str = "onnx"  # what it runs: "onnx" (the variant's graphs) or "torch" (the PyTorch model, cast)
    quantize: tuple[str, ...] = ("none", "dynamic", "static", "fp16", "auto")  # the variants it can run
    on_cpu: bool = True  # its figures describe this CPU: evaluations are keyed by the CPU's int8 kind
    probe: bool = True  # open new graphs in a child process first (runtimes.contain): a crash fails one variant
    engines: bool = False  # it builds engines from the graphs (prepare) and runs those
    plans: bool = False  # `quantize: auto` may time and choose it (open(): ONNX graph files on this CPU)
    resolved_by_plan: bool = False  # a name for "the runtime the plan chooses" (runtime: auto), not a runtime

    def unavailable(self) -> str | None:
        """Why this runtime cannot run on this machine (what to install), or None."""
        return None

    def device(self) -> dict:
        """What its figures were measured on: {'runtime', 'device', ...versions}."""
        return {"runtime": self.name, "device": "cpu"}

    def refuses(self, variant) -> str | None:
        """Why this runtime cannot run `variant` (said at validation, with the recipe line), or None."""
        if variant.quantize not in self.quantize:
            return (f"runtime {self.name} runs quantize {', '.join(self.quantize)}, not {variant.quantize}")
        return None

    def prepare(self, artifact: "Artifact", ctx) -> "Artifact":
        """Make what the runtime runs from the variant's files (TensorRT builds its engines here); ctx is the
        pipeline's VariantContext. Default: run the files as they are."""
        return artifact

    def session(self, artifact: "Artifact", tower: str, threads: int, name: str | None = None) -> Session:
        raise NotImplementedError(f"runtime {self.name} opens no sessions")

    def open(self, path, threads: int, precision: str = "fp32", name: str | None = None) -> Session:
        """A session for one ONNX graph file at `precision` (one of precisions()): the planner's candidates."""
        raise NotImplementedError(f"runtime {self.name} does not open graph files for the planner")

    def precisions(self) -> tuple[str, ...]:
        """The arithmetic it can run an fp32 graph in on this machine ('fp32', and 'bf16' where it runs bf16)."""
        return ("fp32",)

    def plan_runtimes(self) -> list["Runtime"]:
        """The runtimes a `quantize: auto` variant on this runtime plans on (judges and times candidates on):
        itself when it plans, else ONNX Runtime on this CPU (the plan is then made there, as for a GPU
        provider whose timing the CPU cannot stand in for)."""
        from mmcompress import runtimes

        return [self] if self.plans else [runtimes.get(runtimes.DEFAULT)]

    def key(self, artifact: "Artifact", tower: str) -> str:
        """How latency rows name what runs this tower: the graph path alone for ONNX Runtime on the CPU (the
        report's historic keys), 'runtime:path' for every other runtime (and what else makes the session
        differ, e.g. OpenVINO's precision)."""
        return f"{self.name}:{artifact.towers[tower]}"

    def timing_id(self, artifact: "Artifact", tower: str) -> tuple:
        """Artifacts with the same id are one session in the timing rounds (the same bytes on the same runtime
        the same way): timed once, sharing their row."""
        return (self.name, artifact.sha256.get(tower) or str(artifact.towers[tower]))
