"""TensorRT engines: one adapter for the differences between TensorRT versions, used by engine builds here (the
Python API, where `tensorrt` is importable) and by the build script of a Jetson bundle (trtexec on the board).

What differs by version (TensorRT release notes and trtexec --help of each):
- memory pools: `--memPoolSize=workspace:N` (MiB) and `config.set_memory_pool_limit` since 8.4 (`--workspace` and
  `max_workspace_size` before, removed in 10);
- strongly typed networks (`--stronglyTyped`, NetworkDefinitionCreationFlag.STRONGLY_TYPED) since 9.0: the ONNX
  graph's own types are kept, so an fp16 graph with fp32 LayerNorm/Softmax stays so; before 9 the types are hints
  and `--fp16` lets TensorRT choose per layer;
- int8: explicit quantization (Q/DQ in the ONNX graph, symmetric int8) is read by every version here; implicit
  int8 with a calibrator (`--int8 --calib=CACHE`, IInt8EntropyCalibrator2) is deprecated since 10.1, so it is
  offered only below 10;
- explicit batch: a flag to set below 10 (EXPLICIT_BATCH), the only mode from 10;
- TensorRT 11 (the "Migrating trtexec Usage from TensorRT 10.x to 11.x" page of its documentation): every network
  is strongly typed, so the precision flags are gone from trtexec (`--fp16`, `--int8`, `--bf16`, `--fp8`,
  `--int4`, `--best`) along with implicit int8 (`--int8 --calib`), and `--stronglyTyped` is not needed: the
  precision is the ONNX graph's (an fp16 graph builds fp16, a Q/DQ graph int8 where its Q/DQ say and fp32 around
  them); the builder flags FP16/INT8 are not set either;
- DLA: on Orin NX and AGX Orin up to TensorRT 10.x, none in TensorRT 11.0-11.3, back in 11.4 on AGX Orin only;
  Orin Nano and Jetson AGX Thor have no DLA (BOARDS);
- TensorRT 11.1 added an accuracy-aware build-route tuner to trtexec (`--loadRefOutputs`, `--accuracyThreshold`,
  `--accuracyAlgorithm`, a tuning cache; the Global Performance Tuning page of its documentation).

Engines are not portable: an engine runs only on the TensorRT version, GPU model (compute capability) and OS it
was built with. Each engine gets a manifest (`<engine>.json`) and `check_manifest` refuses a mismatch with a
message saying where to rebuild.
"""
from __future__ import annotations

import hashlib
import json
import platform
import re
from dataclasses import dataclass
from pathlib import Path

from mmcompress.errors import BackendMissing

# The boards and what they have: Orin Nano has no DLA; Orin NX and AGX Orin have DLA cores (NVIDIA's Jetson
# Orin module data sheets); Jetson AGX Thor has none (issue 31 of this project, from the JetPack 7 notes).
BOARDS = {"orin-nano": {"name": "Jetson Orin Nano", "dla": False}, "orin-nx": {"name": "Jetson Orin NX", "dla": True},
          "agx-orin": {"name": "Jetson AGX Orin", "dla": True}, "thor": {"name": "Jetson AGX Thor", "dla": False}}
ORIN = ("orin-nano", "orin-nx", "agx-orin")

# JetPack -> the stack it pins, the boards it runs on, and the TensorRT versions those boards can take instead of
# its own (`tensorrt`: [lowest, first refused) as (major, minor)); engines for a board are built on the board.
# Each entry names its source; a value that source does not give is None (shown as "not stated").
JETPACK = {
    # NVIDIA JetPack 5.1.2 release notes (Jetson Linux 35.4.1)
    "5.1.2": {"tensorrt": "8.5.2", "cuda": "11.4", "cudnn": "8.6", "l4t": "35.4.1", "boards": ORIN,
              "takes": ((8, 5), (8, 6))},
    # NVIDIA JetPack 6.0 release notes (Jetson Linux 36.3)
    "6.0": {"tensorrt": "8.6.2", "cuda": "12.2", "cudnn": "8.9", "l4t": "36.3", "boards": ORIN,
            "takes": ((8, 6), (8, 7))},
    # NVIDIA JetPack 6.1 and 6.2 release notes (Jetson Linux 36.4, 36.4.3); "Orin on JetPack 6.x stays on
    # TensorRT 10.x" (issue 31 of this project): TensorRT 11 for Orin comes with JetPack 7.2.2
    "6.1": {"tensorrt": "10.3.0", "cuda": "12.6", "cudnn": "9.3", "l4t": "36.4", "boards": ORIN,
            "takes": ((10, 3), (11, 0))},
    "6.2": {"tensorrt": "10.3.0", "cuda": "12.6", "cudnn": "9.3", "l4t": "36.4.3", "boards": ORIN,
            "takes": ((10, 3), (11, 0))},
    # issue 31 of this project (JetPack 7 as of late 2026): JetPack 7.0/7.1 on Jetson AGX Thor pin TensorRT
    # 10.13, CUDA 13, Jetson Linux 38.x; it states no cuDNN version and no Jetson Linux point release (None, "38.x")
    "7.0": {"tensorrt": "10.13", "cuda": "13", "cudnn": None, "l4t": "38.x", "boards": ("thor",),
            "takes": ((10, 13), (11, 0))},
    "7.1": {"tensorrt": "10.13", "cuda": "13", "cudnn": None, "l4t": "38.x", "boards": ("thor",),
            "takes": ((10, 13), (11, 0))},
    # issue 31 of this project: TensorRT 11.4 needs JetPack >= 7.2.2, for AGX Orin and Thor through one SBSA
    # package; CUDA 13 and Jetson Linux 38.x as JetPack 7.0/7.1 (its JetPack 7 line; no cuDNN version stated)
    "7.2.2": {"tensorrt": "11.4", "cuda": "13", "cudnn": None, "l4t": "38.x", "boards": ("agx-orin", "thor"),
              "takes": ((11, 4), (12, 0))},
}
PRECISIONS = ("fp32", "fp16", "int8-qdq", "int8-calibrated")


def parse_version(v: str) -> tuple[int, int, int]:
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(v))
    if not m:
        raise ValueError(f"not a TensorRT version: {v!r} (expected e.g. 10.3.0)")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True)
class Features:
    """What one TensorRT version offers (the only place versions are compared)."""

    version: tuple[int, int, int]

    @property
    def mem_pool(self) -> bool:
        return self.version >= (8, 4, 0)

    @property
    def strongly_typed(self) -> bool:
        return self.version >= (9, 0, 0)

    @property
    def implicit_int8(self) -> bool:
        return self.version < (10, 0, 0)

    @property
    def explicit_batch_flag(self) -> bool:
        return self.version < (10, 0, 0)

    @property
    def layer_info(self) -> bool:  # --exportLayerInfo / --profilingVerbosity=detailed
        return self.version >= (8, 2, 0)

    @property
    def precision_flags(self) -> bool:  # trtexec --fp16/--int8/--best, BuilderFlag FP16/INT8
        return self.version < (11, 0, 0)

    @property
    def strongly_typed_only(self) -> bool:  # every network strongly typed; --stronglyTyped not needed
        return self.version >= (11, 0, 0)

    @property
    def accuracy_tuner(self) -> bool:  # --loadRefOutputs --accuracyThreshold --accuracyAlgorithm
        return self.version >= (11, 1, 0)

    def dla(self, board: str) -> bool:
        """Whether this TensorRT builds for the DLA of `board` (a BOARDS key)."""
        if not BOARDS[board]["dla"]:
            return False
        if self.version < (11, 0, 0):
            return True
        return self.version >= (11, 4, 0) and board == "agx-orin"  # 11.0-11.3: no DLA; 11.4: AGX Orin only


def features(version: str) -> Features:
    return Features(parse_version(version))


IMPLICIT_INT8 = ("implicit int8 with a calibrator is deprecated from TensorRT 10 (and gone from 11); use the QDQ "
                 "graph (static int8 with target: tensorrt)")


def _checked(version: str, precision: str) -> Features:
    """The version's features, once `precision` is known to be one it can build."""
    f = features(version)
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: one of {', '.join(PRECISIONS)}")
    if precision == "int8-calibrated" and not f.implicit_int8:
        raise ValueError(f"TensorRT {version}: {IMPLICIT_INT8}")
    return f


def stack(jetpack: str, tensorrt: str | None = None) -> dict:
    """A JetPack's stack, with `tensorrt` in place of its own when given (JetsonConfig.tensorrt)."""
    return {**JETPACK[jetpack], **({"tensorrt": tensorrt} if tensorrt else {})}


def refusal(jetpack: str, tensorrt: str | None, boards: list | None, dla_core: int | None) -> tuple[str, str] | None:
    """Why this JetPack / TensorRT / board / DLA combination cannot be built, as (the JetsonConfig key at fault,
    the message), or None. The recipe's validation names the line of that key."""
    s = JETPACK[jetpack]
    if tensorrt is not None:
        try:
            v = parse_version(tensorrt)[:2]
        except ValueError as e:
            return "tensorrt", str(e)
        lo, hi = s["takes"]
        if not lo <= v < hi:
            why = (" (Orin on JetPack 6.x stays on TensorRT 10.x; TensorRT 11 needs JetPack >= 7.2.2)"
                   if jetpack.startswith("6") and v >= (11, 0) else "")
            return "tensorrt", (f"TensorRT {tensorrt} on JetPack {jetpack}: that JetPack takes TensorRT "
                                f"{lo[0]}.{lo[1]} up to below {hi[0]}.{hi[1]}{why}; remove it or pick a JetPack "
                                f"that ships it")
    f = features(tensorrt or s["tensorrt"])
    on = [b for b in s["boards"] if boards is None or b in boards]
    if boards is not None and not on:
        return "boards", (f"JetPack {jetpack} runs on {', '.join(s['boards'])}, none of {', '.join(boards)}; add one "
                          f"of those boards or drop JetPack {jetpack}")
    if dla_core is not None and not any(f.dla(b) for b in on):
        names = ", ".join(BOARDS[b]["name"] for b in on)
        why = ("Jetson AGX Thor has no DLA" if on == ["thor"] else
               "TensorRT 11.0-11.3 has no DLA and 11.4 only on AGX Orin" if not f.precision_flags else "no DLA there")
        return "dla_core", (f"DLA on JetPack {jetpack} (TensorRT {tensorrt or s['tensorrt']}, {names}): {why}; "
                            f"remove dla_core (build for the GPU) or name boards with a DLA (agx-orin, orin-nx)")
    return None


TUNER_FLAGS = ("--loadRefOutputs", "--accuracyThreshold", "--accuracyAlgorithm")


def tuner_args(threshold: float, algorithm: str, inputs: dict, shapes: dict, outputs: dict) -> list[str]:
    """trtexec's accuracy-aware build-route tuner (TensorRT >= 11.1): the routes it tries are judged on `inputs`
    (name -> raw file, at `shapes`: name -> shape) against the reference outputs (name -> raw file; the bundle
    ships the teacher's). `--loadRefOutputs` is assumed to take name:file like `--loadInputs`; build.sh checks
    that its trtexec lists each flag before it builds."""
    def spec(d: dict) -> str:
        return ",".join(f"{k}:{v}" for k, v in d.items())
    return [f"--loadInputs={spec(inputs)}", f"--shapes={spec({k: 'x'.join(map(str, v)) for k, v in shapes.items()})}",
            f"--loadRefOutputs={spec(outputs)}", f"--accuracyThreshold={threshold:g}", f"--accuracyAlgorithm={algorithm}"]


@dataclass(frozen=True)
class Profile:
    """One optimisation profile: input name -> (min, opt, max) shapes."""

    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]

    def trtexec(self) -> list[str]:
        def fmt(i: int) -> str:
            return ",".join(f"{name}:{'x'.join(map(str, s[i]))}" for name, s in self.shapes.items())
        return [f"--minShapes={fmt(0)}", f"--optShapes={fmt(1)}", f"--maxShapes={fmt(2)}"]

    def as_json(self) -> dict:
        return {n: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for n, s in self.shapes.items()}


def graph_inputs(path: Path) -> dict[str, list]:
    """An ONNX graph's inputs: name -> shape with None for dynamic axes."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    init = {i.name for i in g.initializer}
    return {i.name: [d.dim_value if d.dim_value > 0 else None for d in i.type.tensor_type.shape.dim]
            for i in g.input if i.name not in init}


def graph_output(path: Path) -> str:
    """The name of an ONNX graph's first output (the tower's embedding or logits)."""
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.output[0].name


def precision_of(artifact, tower: str) -> str:
    """The engine precision of one tower's graph of an artifact: its own towers by its quantize, others fp32."""
    if not artifact.owns(tower):
        return "fp32"
    return "fp16" if artifact.variant.quantize == "fp16" else "int8-qdq"


def build_engines(precisions: dict, graphs: dict, profile_ranges: tuple, folder: Path,
                  workspace_mb: int = 1024) -> tuple[dict, dict]:
    """runtime: tensorrt: an engine per tower graph (`graphs`: tower -> ONNX path, `precisions`: tower -> engine
    precision) built here, with its manifest and a shared timing cache. profile_ranges: (batch (min, opt, max),
    text length (min, opt, max) or None)."""
    files = {}
    for tower, onnx in graphs.items():
        profile = profile_for(graph_inputs(onnx), *profile_ranges)
        engine = folder / f"{tower}.engine"
        m = build_engine(onnx, engine, precisions[tower], profile, workspace_mb=workspace_mb,
                         timing_cache=folder / "timing.cache")
        files[engine.name] = {"tower": tower, "format": "tensorrt-engine", **{k: m[k] for k in (
            "precision", "tensorrt", "gpu", "compute_capability", "onnx_sha256")}}
    return files, {}


def profile_ranges(recipe, bundle, inputs, batch=None, seq_len=None) -> tuple:
    """(batch (min, opt, max), text length (min, opt, max) or None): given, else [1, the largest checked batch,
    the same] and [1, the eval texts' p90 length, the teacher's max_length]; for raw audio of any length, in
    samples [the shortest eval clip, the p90, the longest clip evaluated or listed in checks.audio_seconds]."""
    import numpy as np

    text = bundle.text_preprocess
    seq = tuple(seq_len) if seq_len else None
    if seq is None and text is not None:
        lengths = inputs.text_lengths()
        p90 = int(min(text.max_length, max(1, np.ceil(np.percentile(lengths, 90))))) if len(lengths) else text.max_length
        seq = (1, p90, text.max_length)
    audio = bundle.audio_preprocess
    if seq is None and audio is not None and not audio.window_s and inputs.clip_seconds is not None:
        # raw audio of any length (wav2vec2): samples from the shortest eval clip to the longest clip timed
        rate, secs = audio.sampling_rate, inputs.clip_seconds
        longest = max([float(secs.max()), *recipe.checks.audio_seconds])
        seq = (int(secs.min() * rate), int(np.percentile(secs, 90) * rate), int(np.ceil(longest * rate)))
    top = max(recipe.checks.batch_sizes)
    return (tuple(batch) if batch else (1, top, top)), seq


def profile_for(inputs: dict[str, list], batch: tuple[int, int, int], seq_len: tuple[int, int, int] | None) -> Profile:
    """inputs: name -> shape with None (or a string) for dynamic axes: batch first, then a sequence axis for
    token inputs; fixed axes (image size) as exported."""
    shapes = {}
    for name, shape in inputs.items():
        dims = []
        for axis, d in enumerate(shape):
            if isinstance(d, int) and d > 0:
                dims.append((d, d, d))
            elif axis == 0:
                dims.append(batch)
            elif seq_len is not None:
                dims.append(seq_len)
            else:
                raise ValueError(f"input {name} has a dynamic axis {axis} and no sequence range was given")
        shapes[name] = tuple(tuple(d[i] for d in dims) for i in range(3))
    return Profile(shapes)


def trtexec_args(version: str, precision: str, onnx: str, engine: str, profile: Profile, *, workspace_mb: int,
                 timing_cache: str | None = None, calib_cache: str | None = None, dla_core: int | None = None,
                 gpu_fallback: bool = True, layer_info: str | None = None, tuner: list[str] | None = None) -> list[str]:
    """trtexec's arguments for one engine on one TensorRT version (the flags that version has)."""
    f = _checked(version, precision)
    if precision == "int8-calibrated" and not calib_cache:
        raise ValueError("int8-calibrated needs the calibration cache")
    args = [f"--onnx={onnx}", f"--saveEngine={engine}", *profile.trtexec()]
    args.append(f"--memPoolSize=workspace:{workspace_mb}" if f.mem_pool else f"--workspace={workspace_mb}")
    if not f.precision_flags:
        pass  # TensorRT 11: strongly typed always, the precision is the graph's; no flag says it
    elif precision == "fp16":
        args += ["--stronglyTyped"] if f.strongly_typed else ["--fp16"]
    elif precision == "int8-qdq":
        args += ["--int8", "--fp16"]  # Q/DQ layers in int8, the float rest in fp16 where TensorRT finds it faster
    elif precision == "int8-calibrated":
        args += ["--int8", "--fp16", f"--calib={calib_cache}"]
    if dla_core is not None:
        if not f.dla("agx-orin"):
            raise ValueError(f"TensorRT {version} builds for no DLA (11.0-11.3 have none; 11.4 on AGX Orin only)")
        args += [f"--useDLACore={dla_core}"] + (["--allowGPUFallback"] if gpu_fallback else [])
    if tuner:
        if not f.accuracy_tuner:
            raise ValueError(f"TensorRT {version} has no accuracy-aware tuner (11.1 and later)")
        args += tuner
    if timing_cache:
        args.append(f"--timingCacheFile={timing_cache}")
    if layer_info and f.layer_info:
        args += [f"--exportLayerInfo={layer_info}", "--profilingVerbosity=detailed"]
    args.append("--verbose")  # the build log lists which layers run on DLA and which fell back to the GPU
    return args


# ---- engine manifests ----------------------------------------------------------------------------------------
class EngineMismatch(BackendMissing):
    """An engine built for another TensorRT, GPU, OS or architecture (or no GPU to run it): exit 4."""


def engine_manifest(*, onnx: Path, precision: str, profile: Profile, tensorrt: str, cuda: str | None,
                    gpu: str, compute_capability: str, calibration: dict | None = None, extra: dict | None = None) -> dict:
    """What an engine was built from and for: the keys check_manifest compares, plus how it was built."""
    from mmcompress.artifact import sha256_file

    return {"format": "tensorrt-engine", "tensorrt": tensorrt, "cuda": cuda, "gpu": gpu,
            "compute_capability": compute_capability, "os": platform.system(), "arch": platform.machine(),
            "precision": precision, "profiles": [profile.as_json()], "onnx": onnx.name, "onnx_sha256": sha256_file(onnx),
            **({"calibration": calibration} if calibration else {}), **(extra or {})}


def here() -> dict:
    """This machine as check_manifest compares it: TensorRT version, GPU, compute capability, OS, architecture
    (TensorRT, CUDA and a GPU must be present)."""
    import tensorrt as trt
    import torch

    if not torch.cuda.is_available():
        raise EngineMismatch("no CUDA device visible: TensorRT engines need the GPU they were built for")
    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {"tensorrt": trt.__version__, "gpu": p.name, "compute_capability": f"{p.major}.{p.minor}",
            "os": platform.system(), "arch": platform.machine()}


def check_manifest(manifest: dict, machine: dict, engine: str, rebuild: str) -> None:
    """Refuse an engine built for another TensorRT version, GPU model or OS, naming both sides and `rebuild`
    (what to run to rebuild it here). TensorRT itself would fail with 'Version tag does not match' or, across
    GPU models, load and then fail or run slowly."""
    from mmcompress.checks.board_check import manifest_problems  # the board's check refuses the same way

    problems = manifest_problems(manifest, machine)
    if problems:
        raise EngineMismatch(f"{engine}: cannot run here: {'; '.join(problems)}. Engines are not portable across "
                             f"TensorRT versions, GPU models or OSes; rebuild it on this machine: {rebuild}")


def read_manifest(engine: Path) -> dict:
    path = engine.with_suffix(".json")
    if not path.is_file():
        raise EngineMismatch(f"{engine}: no manifest {path.name} beside it, so what it was built for is unknown; "
                             f"rebuild it with the bundle's build.sh (which writes one)")
    return json.loads(path.read_text())


# ---- builds through the Python API (where `tensorrt` is importable) -------------------------------------------
def builder_settings(version: str, precision: str) -> dict:
    """The Python API's settings for one precision on one version: network creation flags, builder flags, how
    the workspace is set. Pure, so each version's set is tested without TensorRT."""
    f = _checked(version, precision)
    network = (["EXPLICIT_BATCH"] if f.explicit_batch_flag else []) + \
        (["STRONGLY_TYPED"] if precision == "fp16" and f.strongly_typed and not f.strongly_typed_only else [])
    builder = {"fp32": [], "fp16": [] if f.strongly_typed else ["FP16"], "int8-qdq": ["INT8", "FP16"],
               "int8-calibrated": ["INT8", "FP16"]}[precision] if f.precision_flags else []
    return {"network_flags": network, "builder_flags": builder,
            "workspace": "set_memory_pool_limit" if f.mem_pool else "max_workspace_size",
            "calibrator": precision == "int8-calibrated"}


def calibration_cache_name(onnx_sha256: str, data_key: str, tensorrt: str, gpu: str) -> str:
    """A calibration cache keyed by what makes it valid (the graph, the calibration rows, TensorRT's version and
    the GPU): a stale cache is never read, it simply has another name."""
    key = hashlib.sha256(json.dumps([onnx_sha256, data_key, tensorrt, gpu]).encode()).hexdigest()[:16]
    return f"calibration-{key}.cache"


def calibration_batches(feeds: dict, batch: int):
    """Contiguous float32/int64 batches of exactly `batch` rows (TensorRT's calibrator takes a fixed batch); the
    last partial batch is dropped. Yields dicts name -> array."""
    import numpy as np

    n = len(next(iter(feeds.values())))
    if n < batch:
        raise ValueError(f"{n} calibration rows are fewer than the calibration batch {batch}")
    for i in range(0, n - batch + 1, batch):
        yield {k: np.ascontiguousarray(v[i:i + batch]) for k, v in feeds.items()}


def make_calibrator(feeds: dict, batch: int, cache: Path):
    """An IInt8EntropyCalibrator2 fed from the recipe's calibration rows (TensorRT < 10), reading and writing
    `cache` (calibration_cache_name)."""
    import tensorrt as trt
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.batches = calibration_batches(feeds, batch)
            self.held = []

        def get_batch_size(self):
            return batch

        def get_batch(self, names):
            b = next(self.batches, None)
            if b is None:
                return None
            self.held = [torch.from_numpy(b[n]).cuda() for n in names]
            return [int(t.data_ptr()) for t in self.held]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data):
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_engine(onnx: Path, engine: Path, precision: str, profile: Profile, *, workspace_mb: int = 1024,
                 timing_cache: Path | None = None, calibrator=None) -> dict:
    """Build `engine` from `onnx` with the TensorRT installed here; writes the engine and its manifest
    (`<engine>.json`). -> the manifest."""
    import tensorrt as trt

    s = builder_settings(trt.__version__, precision)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    for name in s["network_flags"]:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx}: TensorRT {trt.__version__}'s ONNX parser refused the graph: {errors}")
    config = builder.create_builder_config()
    if s["workspace"] == "set_memory_pool_limit":
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    else:
        config.max_workspace_size = workspace_mb << 20
    for name in s["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if s["calibrator"]:
        if calibrator is None:
            raise ValueError("int8-calibrated needs a calibrator (make_calibrator)")
        config.int8_calibrator = calibrator
    p = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.shapes.items():
        p.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(p)
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"{onnx}: TensorRT {trt.__version__} could not build a {precision} engine (the log above "
                           f"says why; on small boards a smaller workspace_mb or fewer tactics help)")
    engine.write_bytes(bytes(blob))
    if cache is not None:
        timing_cache.write_bytes(bytes(cache.serialize()))
    m = here()
    manifest = engine_manifest(onnx=onnx, precision=precision, profile=profile, tensorrt=trt.__version__,
                               cuda=_cuda_version(), gpu=m["gpu"], compute_capability=m["compute_capability"],
                               extra={"workspace_mb": workspace_mb, "settings": s})
    engine.with_suffix(".json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _cuda_version() -> str | None:
    try:
        import torch

        return torch.version.cuda
    except ImportError:
        return None
