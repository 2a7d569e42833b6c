"""The recipe schema (the single source of truth for recipe keys) and its loader.

Every field has a description; docs/recipe.md is generated from these models (`make docs`) and a test
keeps it in step. Unknown keys are errors (extra="forbid"). Errors name file:line and the key path.
"""
from __future__ import annotations

import difflib
import string
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, PrivateAttr, ValidationError,
                      field_validator, model_validator)

from mmcompress import _overrides, _recipe_errors, _yaml
from mmcompress.errors import RecipeError
from mmcompress.runtimes import DEFAULT as DEFAULT_RUNTIME

TowerName = Literal["image", "audio", "text", "fusion"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


_CrossFieldError = _recipe_errors.CrossFieldError


# ---- teacher ---------------------------------------------------------------------------------------------
class TeacherConfig(Strict):
    """Exactly one of `zoo`, `hf`, `python`."""

    zoo: str | None = Field(None, description="Name of a built-in teacher (`mmcompress zoo list`). `shapes-clip` is "
                                              "the demo CLIP-style dual encoder, shipped trained with the package "
                                              "(or trained on first use when its config changed) and cached in "
                                              "the user cache dir.")
    hf: str | None = Field(None, description="A Hugging Face model directory (relative to the recipe), or a hub id "
                                             "already in the local Hugging Face cache; nothing is downloaded. "
                                             "CLIP/SigLIP become an image and a text tower; ViT-family models an "
                                             "image tower; BERT-family models (and sentence-transformers "
                                             "directories) a text tower; CLAP an audio and a text tower; AST "
                                             "and wav2vec2 an audio tower (docs/audio.md).")
    python: str | None = Field(None, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
                               description="`package.module:function` returning a `mmcompress.Bundle` (see "
                                           "docs/teachers.md). The recipe's folder is put on `sys.path` first.")
    towers: list[TowerName] | None = Field(None, min_length=1, description="Keep only these towers of a dual "
                                                                             "encoder (default: all).")
    pooling: Literal["cls", "mean", "pooler"] | None = Field(
        None, description="Single-tower `hf` encoders: `cls` token, attention-masked `mean`, or the model's "
                          "`pooler` output. Default: the sentence-transformers pooling config if there is one, "
                          "else `mean` for text and `cls` for images.")
    normalize: bool | None = Field(None, description="Single-tower `hf` encoders: L2-normalise the embedding. "
                                                     "Default: true if the directory has a sentence-transformers "
                                                     "Normalize module, else false.")
    max_length: int | None = Field(None, ge=1, description="Text tokens per input (padding and truncation). "
                                                           "Default: the model's own limit (sentence-transformers "
                                                           "`max_seq_length`, the tokenizer's, the position "
                                                           "embeddings'), at most 512.")
    text_padding: Literal["longest", "max_length"] | None = Field(
        None, description="How text batches are padded. `longest`: to the batch's longest text, as a serving "
                          "stack does (checks and latency then see real lengths). `max_length`: always to "
                          "`max_length`, for models trained that way that read a fixed position. Default: "
                          "`max_length` for SigLIP (its text tower pools the last token), else `longest`.")

    @field_validator("zoo")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        from mmcompress.models.zoo import REGISTRY

        if name is not None and name not in REGISTRY:
            close = difflib.get_close_matches(name, list(REGISTRY), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see `mmcompress zoo list`"
            raise ValueError(f"{name!r} is not a zoo teacher ({', '.join(REGISTRY)}); {hint}")
        return name

    @model_validator(mode="after")
    def _exactly_one(self):
        given = [k for k in ("zoo", "hf", "python") if getattr(self, k) is not None]
        if len(given) != 1:
            raise _CrossFieldError(("teacher",), "give exactly one of zoo, hf, python" +
                                   (f" (got {', '.join(given)})" if given else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("zoo", "hf", "python") if getattr(self, k) is not None)

    # a python entrypoint's Bundle once preflight has built it (validate checks the data against it): the run
    # reuses it rather than building the user's model twice
    _bundle: Any = PrivateAttr(default=None)


# ---- data ------------------------------------------------------------------------------------------------
class SplitsConfig(Strict):
    train: int = Field(0, ge=0, description="Images for torch-side stages that train (distillation, recovery). "
                                            "Unused when the recipe has no such stage.")
    calibration: int = Field(256, ge=0, description="Images for static int8 calibration.")
    eval: int = Field(1000, ge=1, description="Held-out image/caption pairs every check runs on.")


class PromptsConfig(Strict):
    templates: list[str] | None = Field(
        None, description="Zero-shot prompt templates with the source's placeholders (shapes: `{colour}`, `{shape}`; "
                          "digits: `{digit}`; sounds: `{pitch}`, `{sound}`; jsonl, imagefolder, audiofolder: `{label}`). Default: the wording the source's "
                          "captions use (jsonl, imagefolder: 'a photo of a {label}'; audio lines and audiofolder: 'the sound of a "
                          "{label}'; an image or audio folder's captions use "
                          "the first template). Use the teacher's training wording: prompts that drop words the "
                          "teacher always saw cost tens of points.")
    ensemble: Literal["max", "mean"] = Field(
        "max", description="How a class's prompts are combined: `max` of the similarities or `mean` of the "
                           "normalised prompt embeddings.")


PLACEHOLDERS = {"shapes": {"colour", "shape"}, "shapes-vqa": set(), "digits": {"digit"}, "sounds": {"pitch", "sound"},
                "jsonl": {"label"}, "imagefolder": {"label"}, "audiofolder": {"label"}}
DIGITS_IMAGES = 1797  # scikit-learn's load_digits()


class DataConfig(Strict):
    source: Literal["shapes", "shapes-vqa", "digits", "sounds", "jsonl", "imagefolder", "audiofolder"] = Field(
        description="`shapes`: procedurally drawn coloured shapes with captions (seeded). `shapes-vqa`: the same "
                    "images, each with a question (what colour / what shape / is it small or large) and its "
                    "one-word answer, for fusion teachers (`zoo: shapes-vqa`). `digits`: scikit-learn's "
                    "bundled handwritten digits, upscaled, captioned 'a handwritten digit seven'. `jsonl`: your "
                    "lines of {image, caption, label?}, {audio, caption?, label?} or {text, pair?, label?} "
                    "(docs/data.md, docs/audio.md). `sounds`: procedurally synthesised tones, chirps, noise "
                    "bursts and click trains with captions, for the audio demo (`zoo: sounds-clap`). "
                    "`audiofolder`: one folder of audio files per class. `imagefolder`: "
                    "one folder of images per class.")
    path: str | None = Field(None, description="`jsonl`: the file; `imagefolder`, `audiofolder`: the root folder. Relative to "
                                               "the recipe.")
    classes: list[str] | None = Field(None, min_length=1, description="Class names, in order (default: the "
                                                                      "sorted distinct labels of the data).")
    classes_file: str | None = Field(None, description="A JSON list of class names, instead of `classes`. "
                                                       "Relative to the recipe.")
    splits: SplitsConfig = Field(default_factory=SplitsConfig, description="Split sizes; splits never overlap.")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig, description="Zero-shot class prompts.")

    @model_validator(mode="after")
    def _fits_source(self):
        allowed = PLACEHOLDERS[self.source]
        if not allowed and "prompts" in self.model_fields_set:
            raise _CrossFieldError(("data", "prompts"), f"data.source {self.source} has no class prompts: a fusion "
                                                        f"teacher answers with its own head; remove data.prompts")
        for i, t in enumerate(self.prompts.templates or []):
            used = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
            if used - allowed or not used:
                raise _CrossFieldError(("data", "prompts", "templates", i),
                                       f"template {t!r} must use {', '.join('{' + a + '}' for a in sorted(allowed))} "
                                       f"and nothing else for data.source {self.source}")
        if self.source in ("jsonl", "imagefolder", "audiofolder") and not self.path:
            what = {"jsonl": "JSONL file", "imagefolder": "image folder", "audiofolder": "audio folder"}[self.source]
            raise _CrossFieldError(("data", "source"), f"data.source {self.source} needs data.path: the {what}")
        if self.classes and self.classes_file:
            raise _CrossFieldError(("data", "classes"), "give classes or classes_file, not both")
        total = self.splits.train + self.splits.calibration + self.splits.eval
        if self.source == "digits" and total > DIGITS_IMAGES:
            raise _CrossFieldError(("data", "splits"), f"digits has {DIGITS_IMAGES} images but the splits ask for "
                                                       f"{total}; make train + calibration + eval <= {DIGITS_IMAGES}")
        return self


# ---- export ----------------------------------------------------------------------------------------------
class OnnxConfig(Strict):
    opset: int = Field(18, ge=17, le=21, description="ONNX opset of the exported graphs.")
    exporter: Literal["dynamo", "torchscript"] = Field(
        "dynamo", description="`torch.onnx.export` path. `dynamo` (default) gave faster ORT graphs in measurements; "
                              "`torchscript` is the legacy exporter.")
    pooled_tokens_only: bool = Field(
        True, description="CLIP image towers: the last encoder layer computes only the class token, the one row "
                          "the pooled embedding reads. Same output (held by the parity check); int8 image tower at "
                          "batch 16 on AVX2: demo teacher 31.4 -> 28.7 ms, its 2-layer student 15.3 -> 11.6 ms "
                          "(docs/distillation.md). Other towers are exported as they are.")
    parity_max_abs: float = Field(1e-3, gt=0, description="Largest allowed |ONNX - PyTorch| over the eval inputs; "
                                                          "beyond it the export stage fails.")
    parity_min_cosine: float = Field(0.9999, gt=0, le=1, description="Smallest allowed per-sample cosine between "
                                                                     "ONNX and PyTorch embeddings.")


class Budgets(Strict):
    max_accuracy_drop: float | None = Field(None, ge=0, le=100, description="Largest allowed drop in the task's "
                                                                      "primary metric (zero-shot top-1, answer "
                                                                      "accuracy, ...), in points, against the "
                                                                      "teacher in the same run.")
    min_top1_agreement: float | None = Field(None, ge=0, le=100, description="Smallest allowed share (%) of eval "
                                                                         "rows where the artifact predicts the "
                                                                         "teacher's class or answer.")
    min_cosine: float | None = Field(None, gt=-1, le=1, description="Smallest allowed per-sample embedding cosine to "
                                                                    "the teacher, per tower (the minimum over eval).")
    min_speedup: float | None = Field(None, gt=0, description="Smallest allowed teacher-median / candidate-median "
                                                              "latency, per tower and batch size. Judged on the "
                                                              "speedup's 95% interval over the paired rounds: it fails "
                                                              "only when the whole interval is below the limit; an "
                                                              "interval straddling it passes, marked undecided.")
    max_latency_ms: dict[TowerName, dict[PositiveInt, PositiveFloat]] | None = Field(
        None, description="Largest allowed median latency in ms, per tower and batch size: "
                          "`{image: {1: 5.0, 16: 40}}`. For the text tower it holds at the eval data's p90 "
                          "length (the budget row names the length). Judged on the median's 95% interval: it "
                          "fails only when the whole interval is above the limit (undecided when it straddles).")
    max_size_mb: float | None = Field(None, gt=0, description="Largest allowed total size of the artifact's files.")

    def merged(self, override: "Budgets | None") -> "Budgets":
        """This budget with every field the override sets explicitly (null included) replaced."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


def _patterns_compile(v: list[str]) -> list[str]:
    from mmcompress.patterns import check

    check(v)
    return v


# module-name patterns of nodes left in float: the rules of patterns.py, shared with pruning's `layers`
KeepFloat = Annotated[list[str], AfterValidator(_patterns_compile), Field(
    description="Module-name patterns of the PyTorch modules whose MatMul/Gemm nodes stay float (`*` globs, "
                "`re:` regexes, `!` excludes; the last pattern that matches decides), e.g. "
                "`['*.layers.0.attention.self.value']`. Names as the report's sensitivity table shows them "
                "(dynamo exporter). A pattern that matches no node is an error.")]


# dynamic and static int8 alike: 7-bit weights, defaulting from export.target (export/int8_targets.py)
ReduceRange = Annotated[bool | None, Field(
    description="7-bit weights. Default: from `export.target` (on for CPUs without VNNI, where ONNX Runtime's "
                "U8S8 kernels saturate; off with VNNI/AMX/ARM64). See docs/quantization.md.")]


class RuntimeChoices:
    """Marks a field whose values are the runtimes registry's names (runtimes.names(): the built-in ones and any
    registered since); the recipe reference lists them."""

    @staticmethod
    def choices() -> list[str]:
        from mmcompress import runtimes

        return runtimes.names()


def _known_runtime(name: str) -> str:
    from mmcompress import runtimes

    if name not in runtimes.names():
        raise ValueError(f"{name!r} is not a runtime; one of {', '.join(runtimes.names())}")
    return name


Runtime = Annotated[str, AfterValidator(_known_runtime), RuntimeChoices]


class _Variant(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Artifact name: folder and report row.")
    model: str | None = Field(None, description="The model this variant is made from: `teacher`, or the `name` of "
                                                "a torch-side stage (e.g. `distill`). Default: the last stage's "
                                                "model, or the teacher when the recipe has no stages. Every "
                                                "variant is checked against the teacher.")
    towers: list[TowerName] = Field(["image", "text"], min_length=1,
                                    description="Towers this variant converts; the others stay ONNX fp32. "
                                                "Default: every tower of the teacher (`fusion` for a fusion "
                                                "teacher).")
    budgets: Budgets | None = Field(None, description="Per-variant budgets; each key set here replaces "
                                                      "`checks.budgets`' (null switches a budget off).")
    runtime: Runtime = Field(
        DEFAULT_RUNTIME, description="What runs the artifact in the checks. `onnxruntime`: the ONNX graphs on ONNX "
                                   "Runtime's CPU provider. `onnxruntime-cuda` / `onnxruntime-tensorrt`: the same "
                                   "graphs on ONNX Runtime's CUDA / TensorRT provider (onnxruntime-gpu; a run "
                                   "where the provider is missing stops before any stage). `tensorrt`: "
                                   "TensorRT engines built here from the graphs through its Python API (quantize "
                                   "none, fp16, or static with target: tensorrt; `engines/<name>/`). `torch-cuda` / "
                                   "`torch-cpu`: no ONNX; the model itself in PyTorch eager on that device, cast "
                                   "to the variant's precision (quantize none, fp16 or bf16). See docs/gpu.md. "
                                   "`openvino`: the graphs on OpenVINO's CPU plugin (pip install "
                                   "mmcompress[openvino]; quantize none, dynamic, static, fp16, auto, or bf16 on "
                                   "CPUs with AVX-512 BF16 or AMX), at the precision the variant names "
                                   "(docs/openvino.md). `auto` (with quantize: auto only): the plan searches every "
                                   "runtime installed here that plans (onnxruntime, openvino) at every precision it "
                                   "offers, and the variant runs on the one fastest over its towers "
                                   "(docs/quantization.md).")

    @model_validator(mode="after")
    def _runtime_fits(self):
        from mmcompress import runtimes

        why = runtimes.get(self.runtime).refuses(self)  # each runtime says which variants it runs
        if why:
            raise ValueError(why)
        return self


class Fp32Variant(_Variant):
    quantize: Literal["none"] = Field(description="No conversion: the exported fp32 ONNX graphs.")


class DynamicVariant(_Variant):
    quantize: Literal["dynamic"] = Field(description="ONNX Runtime `quantize_dynamic`: int8 weights, activations "
                                                     "quantized at run time. No calibration.")
    per_channel: bool = Field(False, description="Per-output-channel weight scales.")
    weight_type: Literal["int8", "uint8"] = Field("int8", description="Weight integer type.")
    op_types: list[str] = Field(["MatMul", "Gemm"], min_length=1, description="ONNX op types to quantize.")
    keep_float: KeepFloat = []
    reduce_range: ReduceRange = None


class CalibrationConfig(Strict):
    method: Literal["minmax", "percentile"] = Field(
        "minmax", description="Activation range estimator (ORT calibrators). `entropy` is not offered: through "
                              "`quantize_static` it gives the same ranges as minmax (its bin counts cannot be set). See docs/quantization.md for the "
                              "measured comparison.")
    percentile: float = Field(99.999, gt=90, le=100, description="With `percentile`: the kept percentile.")
    samples: int | None = Field(None, ge=1, description="Calibration images/texts to use; default: the whole "
                                                        "calibration split.")


GraphTarget = Annotated[Literal["cpu", "tensorrt"], Field(
    description="What the graph is shaped for. `cpu`: ONNX Runtime's CPU kernels (int8: U8S8 QDQ, settings from "
                "`export.target`). `tensorrt`: TensorRT's explicit quantization and strongly typed builds "
                "(int8: symmetric S8S8 QDQ, per-channel weights, a dedicated Q/DQ pair per consumer, bias left "
                "float; fp16: LayerNorm/Softmax/Pow/ReduceMean/Sqrt kept fp32). Checked on ONNX Runtime's CPU "
                "like any artifact; int8 graphs for TensorRT run there with Q/DQ as written (no int8 kernels), "
                "so the fidelity is TensorRT's arithmetic on any CPU kind and the CPU latency says nothing about "
                "the GPU. See docs/gpu.md.")]


class StaticVariant(_Variant):
    quantize: Literal["static"] = Field(description="ONNX Runtime `quantize_static`, QDQ format, activation ranges "
                                                    "calibrated on the calibration split.")
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig, description="Calibration settings.")
    per_channel: bool = Field(True, description="Per-output-channel weight scales.")
    activation_type: Literal["uint8", "int8"] = Field(
        "uint8", description="Activation integer type. uint8 (U8S8) is the fast path on x86; ORT's default int8 "
                             "(S8S8) on every op was slower than fp32 and lost accuracy in measurements.")
    weight_type: Literal["int8", "uint8"] = Field("int8", description="Weight integer type.")
    op_types: list[str] = Field(["MatMul", "Gemm"], min_length=1,
                                description="ONNX op types to quantize; others stay float.")
    activation_matmuls: bool = Field(
        False, description="Also quantize MatMuls whose inputs are both activations (attention's Q.K^T and "
                           "scores.V). Off by default: on the demo teacher it cost image-tower fidelity (min cosine "
                           "0.9960 vs 0.9996) and speed (batch 16: 1.15x vs 1.30x over PyTorch).")
    preprocess: bool = Field(True, description="Run ORT's `quant_pre_process` (shape inference, graph "
                                               "optimisation) before quantizing.")
    keep_float: KeepFloat = []
    reduce_range: ReduceRange = None
    target: GraphTarget = "cpu"

    @model_validator(mode="after")
    def _tensorrt(self):
        if self.target == "tensorrt":
            if self.activation_type != "int8" and "activation_type" in self.model_fields_set:
                raise ValueError("target tensorrt takes symmetric int8 activations (explicit quantization); "
                                 "remove activation_type")
            if self.weight_type != "int8" or self.reduce_range:
                raise ValueError("target tensorrt takes symmetric 8-bit int8 weights; remove weight_type / "
                                 "reduce_range")
        return self


class Fp16Variant(_Variant):
    quantize: Literal["fp16"] = Field(description="Weights and compute in float16 (`onnxruntime.transformers."
                                                  "float16`). Half the size; slower than fp32 on most CPUs: meant "
                                                  "for GPU targets.")
    keep_io_types: bool = Field(True, description="Keep float32 inputs and outputs (casts inside the graph).")
    target: GraphTarget = "cpu"
    keep_fp32_ops: list[str] | None = Field(
        None, description="ONNX op types left in float32 (casts around them). Default: none for `target: cpu`; "
                          "LayerNormalization, Softmax, Pow, ReduceMean and Sqrt for `target: tensorrt` (the "
                          "reductions that overflow or lose precision in fp16 in transformers).")


class AutoVariant(_Variant):
    quantize: Literal["auto"] = Field(
        description="Precision planning: each tower's int8 sensitivity per node on the calibration split, then "
                    "the fastest plan (int8 method, nodes kept float) whose cosine to the fp32 graph meets this "
                    "variant's `min_cosine` budget and whose task metric, on the calibration split, loses at most "
                    "its `max_accuracy_drop`, timed on this machine interleaved with the fp32 graph. Plans that "
                    "meet them but are slower than fp32: fp32 is kept. None meets them: the closest plan is "
                    "checked (and its budgets fail). See docs/quantization.md.")
    methods: list[Literal["dynamic", "static", "nncf"]] = Field(
        ["dynamic", "static"], min_length=1,
        description="int8 methods searched: dynamic (MatMul/Gemm weights int8, activations at run time), "
                    "static (U8S8 QDQ on MatMul/Gemm, per-channel weights, minmax calibration) and nncf (NNCF's "
                    "post-training quantizer, transformer preset: SmoothQuant folded into the weights, then QDQ "
                    "int8; pip install mmcompress[openvino]).")
    calibration: list[Literal["minmax", "percentile"]] = Field(
        ["minmax", "percentile"], min_length=1,
        description="Static plans: activation range estimators compared on the all-int8 plan (with each "
                    "`per_channel` setting); the one with the highest min cosine goes on to the plans that keep "
                    "nodes float. Every one tried is timed and may be chosen.")
    percentile: float = Field(99.999, gt=90, le=100, description="Static plans with `percentile` calibration: the "
                                                                 "kept percentile.")
    per_channel: list[bool] = Field([True], min_length=1, description="Static plans: per-channel weight scales "
                                                                      "(true), per-tensor (false); both: compared "
                                                                      "like `calibration`.")
    max_float_nodes: int = Field(16, ge=0, description="Most nodes a plan may keep float, per tower.")
    target_cosine: float = Field(0.99, gt=-1, le=1, description="The min cosine a plan must keep when no "
                                                               "`min_cosine` budget applies to this variant.")
    top_blocks: int = Field(2, ge=0, description="Sensitivity: the worst encoder blocks analysed node by node.")
    top_nodes: int = Field(8, ge=0, description="Sensitivity: the worst nodes measured leave-one-out.")
    max_seconds: float = Field(300, gt=0, description="Time budget of the search per tower; when it ends, the best "
                                                      "plan found so far is used and the report says why.")
    keep_float: KeepFloat = []
    plan: str | None = Field(None, description="A plan.json an earlier run wrote (`variants/<name>/plan.json`, "
                                               "relative to the recipe): its chosen method and float nodes per "
                                               "tower are applied as they are, without the search (same model "
                                               "and export settings: every node it names must be in the graph). "
                                               "The artifact is checked like any other.")
    reduce_range: ReduceRange = None


class Bf16Variant(_Variant):
    quantize: Literal["bf16"] = Field(description="bfloat16: the float32 exponent range, so no fp16 overflow. With "
                                                  "runtime torch-cuda or torch-cpu the PyTorch model cast to bf16; "
                                                  "with runtime openvino the fp32 graphs compiled at bf16 precision. "
                                                  "On the CPU (torch-cpu, openvino) only where it has AVX-512 BF16 "
                                                  "or AMX; refused elsewhere, where bf16 is emulated and slower "
                                                  "than fp32.")


Variant = Annotated[Union[Fp32Variant, DynamicVariant, StaticVariant, Fp16Variant, Bf16Variant, AutoVariant],
                    Field(discriminator="quantize")]


def tensorrt_unbuildable(v) -> str | None:
    """Why TensorRT cannot build an engine from this variant's graphs (None: it can)."""
    from mmcompress import runtimes

    if runtimes.get(getattr(v, "runtime", DEFAULT_RUNTIME)).runs != "onnx":
        return "a PyTorch runtime variant has no ONNX graph to build from"
    if v.quantize in ("none", "fp16"):
        return None
    if v.quantize == "static" and v.target == "tensorrt":
        return None
    if v.quantize == "static":
        return ("its Q/DQ graph is shaped for CPUs (asymmetric uint8 activations, which TensorRT refuses); set "
                "target: tensorrt on it or ship another variant")
    return (f"quantize {v.quantize} makes ONNX Runtime-only int8 ops (DynamicQuantizeLinear, MatMulInteger) that "
            f"TensorRT cannot build; ship quantize: static with target: tensorrt instead")


class AccuracyTuner(Strict):
    """trtexec's accuracy-aware tuner (TensorRT >= 11.1): build routes whose outputs stray from the reference
    beyond the threshold are dropped. Both values are passed to trtexec as written (docs/gpu.md)."""

    threshold: PositiveFloat = Field(description="`--accuracyThreshold`: the largest loss against the teacher's "
                                                 "outputs a build route may have, in the algorithm's unit.")
    algorithm: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="`--accuracyAlgorithm`: how outputs are "
                                                                     "compared (a name trtexec --help lists).")


class JetsonConfig(Strict):
    """A build-on-device bundle for NVIDIA Jetson boards (docs/gpu.md): engines are built on the board, so the
    bundle carries the ONNX graphs, a build.sh running trtexec with the flags of that JetPack's TensorRT, the
    eval sample with the teacher's outputs, and a manifest; `mmcompress check BUNDLE` then checks the built
    engines on the board."""

    jetpack: list[Literal["5.1.2", "6.0", "6.1", "6.2", "7.0", "7.1", "7.2.2"]] = Field(
        min_length=1, description="JetPack versions to write a bundle for (one folder each): 5.1.2 (TensorRT "
                                  "8.5.2), 6.0 (TensorRT 8.6.2), 6.1 and 6.2 (TensorRT 10.3) on Orin Nano, Orin NX "
                                  "and AGX Orin; 7.0 and 7.1 (TensorRT 10.13, CUDA 13) on Jetson AGX Thor; 7.2.2 "
                                  "(TensorRT 11.4) on AGX Orin and Thor.")
    boards: list[Literal["orin-nano", "orin-nx", "agx-orin", "thor"]] | None = Field(
        None, min_length=1, description="The boards the bundles are for (default: every board each JetPack runs "
                                        "on). Decides where `dla_core` can be used: Orin NX and AGX Orin have DLA "
                                        "cores (on TensorRT 11.4 AGX Orin only), Orin Nano and Thor none.")
    tensorrt: dict[str, str] | None = Field(
        None, description="JetPack version -> the TensorRT on those boards when it is not the JetPack's own, e.g. "
                          "`{'6.2': '10.7.0'}`: build.sh then uses that TensorRT's flags. Only what the JetPack's "
                          "CUDA takes: 10.x on JetPack 6.1/6.2 (TensorRT 11 needs JetPack >= 7.2.2).")
    variants: list[str] | None = Field(
        None, description="Names of the export variants to ship. Default: every variant TensorRT can build: "
                          "`quantize: none` (fp32 engine), `fp16`, and `static` with `target: tensorrt` (int8 "
                          "from its Q/DQ).")
    batch: list[PositiveInt] | None = Field(None, min_length=3, max_length=3,
                                            description="Optimisation profile's [min, opt, max] batch. Default: "
                                                        "[1, largest checks.batch_sizes, the same].")
    seq_len: list[PositiveInt] | None = Field(None, min_length=3, max_length=3,
                                              description="Text inputs: [min, opt, max] tokens. Default: [1, the "
                                                          "eval data's p90 length, the teacher's max_length].")
    dla_core: int | None = Field(None, ge=0, le=1, description="Build for this DLA core (AGX Orin, Orin NX; "
                                                               "TensorRT 11.0-11.3 have no DLA and 11.4 only on AGX "
                                                               "Orin; Thor has none: refused there), layers DLA "
                                                               "cannot run falling back to the GPU (`gpu_fallback`); "
                                                               "`mmcompress check` reports the share that fell "
                                                               "back. Default: the GPU.")
    gpu_fallback: bool = Field(True, description="With dla_core: let layers DLA cannot run fall back to the GPU "
                                                 "(else the build fails on the first such layer).")
    workspace_mb: PositiveInt = Field(1024, description="TensorRT's workspace memory pool in MiB. Boards share "
                                                        "memory between CPU and GPU; engine builds that take "
                                                        "more get killed on 4-8 GB boards.")
    eval_rows: PositiveInt = Field(256, description="Eval rows shipped with the teacher's outputs (the check on "
                                                    "the board runs the engines over these).")
    accuracy_tuner: AccuracyTuner | None = Field(
        None, description="TensorRT >= 11.1 (JetPack 7.2.2): trtexec's accuracy-aware build-route tuner on the "
                          "bundles whose TensorRT has it, fed with the bundle's eval rows and the teacher's outputs "
                          "for them (`ref/`); the other bundles build as without it. Refused when no listed "
                          "JetPack's TensorRT has it.")

    @field_validator("tensorrt", mode="before")
    @classmethod
    def _quoted(cls, v):
        if isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, str) or not isinstance(x, str):
                    raise ValueError(f"write both versions in quotes, e.g. '6.2': '10.7.0' (YAML reads {k}: {x} as "
                                     f"numbers, and 10.10 would become 10.1)")
        return v


class ExportConfig(Strict):
    target: Literal["auto", "avx2", "avx512", "vnni", "amx", "arm64"] = Field(
        "auto", description="The CPU kind the int8 artifacts are for; int8 settings (reduce_range) follow it. "
                            "`auto`: this machine's kind. `avx2`: AVX2 without VNNI; `avx512`: AVX-512 without VNNI; "
                            "`vnni`: AVX-512 VNNI or AVX-VNNI; `amx`: AMX; `arm64`. Checking on a CPU of another "
                            "kind is allowed and the report says so.")
    onnx: OnnxConfig = Field(default_factory=OnnxConfig, description="ONNX export of each tower.")
    variants: list[Variant] = Field(min_length=1, description="Artifacts made from the ONNX export; every one is "
                                                              "checked against the teacher.")
    jetson: JetsonConfig | None = Field(None, description="Write a build-on-device bundle for Jetson boards "
                                                          "(`bundles/jetson-jp<version>/`).")

    @model_validator(mode="after")
    def _unique_names(self):
        first: dict[str, int] = {}
        for i, v in enumerate(self.variants):  # the error points at the second one's name: the line to change
            if v.name in first:
                raise _CrossFieldError(("export", "variants", i, "name"),
                                       f"{v.name!r} is already the name of export.variants[{first[v.name]}]; "
                                       f"give each variant its own name (it is its folder and report row)")
            first[v.name] = i
        return self



# ---- torch-side stages -----------------------------------------------------------------------------------
PYTHON_REF = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
StageName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]


class StudentTower(Strict):
    """One tower's student: fewer layers and/or a narrower width of the teacher's own class, or your module."""

    layers: PositiveInt | None = Field(None, description="Encoder layers to keep, initialised from every k-th "
                                                          "teacher layer (the last always kept). Default: all.")
    width: float = Field(1.0, gt=0, le=1, description="Fraction of the hidden size, attention heads and MLP "
                                                      "width to keep (whole heads; initialised from the "
                                                      "teacher's leading channels). Dual encoders only: their "
                                                      "projection keeps the embedding size.")
    init: Literal["teacher", "scratch"] = Field(
        "teacher", description="`teacher`: start from the teacher's weights (kept layers, leading channels). "
                               "`scratch`: the class's own random initialisation (needs many more steps).")
    python: str | None = Field(None, pattern=PYTHON_REF,
                               description="`package.module:function(teacher_tower) -> torch.nn.Module`: your "
                                           "own student module, taking the tower's inputs and returning the "
                                           "teacher's embedding size (docs/distillation.md). Instead of "
                                           "layers/width.")

    @model_validator(mode="after")
    def _one_kind(self):
        if self.python and (self.layers is not None or self.width != 1.0 or self.init != "teacher"):
            raise ValueError("give python or layers/width/init, not both")
        return self


class LossWeights(Strict):
    cosine: float = Field(1.0, ge=0, description="1 - cosine between student and teacher embeddings, per tower.")
    mse: float = Field(0.0, ge=0, description="Mean squared error of the raw embeddings, per tower.")
    contrastive_kd: float = Field(0.0, ge=0, description="KL between the teacher's and the student's "
                                                         "similarity distributions over anchor texts (image "
                                                         "tower) or the batch's images (text tower), at the "
                                                         "teacher's temperature.")
    contrastive: float = Field(0.0, ge=0, description="CLIP's loss of the student on the train split's paired "
                                                      "captions (image-text data; dual encoders).")
    hidden: float = Field(0.0, ge=0, description="MSE between each student layer's output, through a learned "
                                                 "projection, and the teacher layer it started from (layers/width "
                                                 "students; the teacher runs beside the student, so steps cost "
                                                 "more).")

    @model_validator(mode="after")
    def _some(self):
        if not any(self.model_dump().values()):
            raise ValueError("every loss weight is 0; give at least one a positive weight (cosine: 1)")
        return self


class _Training(Strict):
    """The training loop's settings, shared by the stages that train (distillation, pruning's recovery)."""

    losses: LossWeights = Field(default_factory=LossWeights, description="Loss weights.")
    steps: PositiveInt = Field(300, description="Optimizer steps (fixed, so runs are comparable).")
    batch: PositiveInt = Field(64, description="Global batch (split across processes under torchrun).")
    lr: PositiveFloat = Field(1e-3, description="Peak AdamW learning rate.")
    warmup: int = Field(20, ge=0, description="Linear warm-up steps before the cosine decay.")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay on matrices (not on norms and biases).")
    grad_clip: PositiveFloat | None = Field(1.0, description="Clip the gradient norm to this (null: no clipping).")
    eval_every: PositiveInt | None = Field(100, description="Evaluate on the eval split (task metric, cosine to "
                                                            "the teacher) every this many steps and at the end.")
    checkpoint_every: PositiveInt = Field(50, description="Save a checkpoint every this many steps; a rerun "
                                                          "after an interrupt resumes from the last one.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="`bf16`: autocast matmuls to bfloat16. `auto`: bf16 where the hardware has it (GPUs "
                            "with bf16, CPUs with AVX-512 BF16 or AMX), else fp32.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the student trains (`auto`: cuda "
                                                                       "when available).")

    @model_validator(mode="after")
    def _intervals(self):
        if self.warmup >= self.steps:
            raise ValueError(f"warmup {self.warmup} must be below steps {self.steps}")
        return self


class DistillConfig(_Training):
    """Distillation: a student learns the teacher's embeddings on the train split (docs/distillation.md)."""

    name: StageName = Field("distill", description="Stage name: its folder `stages/<name>` and what variants' "
                                                   "`model` refers to.")
    towers: dict[TowerName, StudentTower] = Field(min_length=1, description="Towers to distil, each with its "
                                                                            "student; the others stay the "
                                                                            "teacher's.")


class PruneTower(Strict):
    """What one tower loses: shares of its attention heads and MLP channels, in the layers `layers` selects."""

    heads: float = Field(0.0, ge=0, lt=1, description="Share of attention heads removed (whole heads; at least "
                                                      "one stays in every layer).")
    mlp: float = Field(0.0, ge=0, lt=1, description="Share of MLP hidden channels removed.")
    macs: float | None = Field(None, gt=0, lt=1, description="Instead of heads/mlp: the share of the tower's "
                                                             "multiply-accumulates per sample to keep (e.g. 0.7); "
                                                             "heads and MLP channels are removed in one share, "
                                                             "found by bisection on what PyTorch's FLOP counter "
                                                             "measures.")
    layers: list[str] = Field([], description="Module-name patterns choosing the encoder layers whose heads and "
                                              "channels are pruned (`*` globs, `re:` regexes, `!` excludes; the "
                                              "last pattern that matches a layer decides). Default: every layer "
                                              "of the tower.")
    drop_layers: list[str] = Field([], description="Module-name patterns (same rules) of encoder layers removed "
                                                   "whole, e.g. `['*.layers.2']`; at least one layer stays.")
    sparsity: Literal["none", "2:4"] = Field(
        "none", description="`2:4`: in the chosen layers' attention and MLP weights, 2 of every 4 consecutive input "
                            "weights zeroed (the smaller ones), and kept zero through recovery: the pattern NVIDIA "
                            "GPUs' sparse tensor cores run (TensorRT sparse tactics). The matrices keep their size, "
                            "so no CPU runtime runs them faster; the report says so.")

    @model_validator(mode="after")
    def _something(self):
        if self.macs is not None and (self.heads or self.mlp):
            raise ValueError("give macs (a target) or heads/mlp (shares), not both")
        if not self.heads and not self.mlp and self.macs is None and not self.drop_layers and self.sparsity == "none":
            raise ValueError("nothing to prune: give heads and/or mlp a share above 0 (e.g. mlp: 0.4), a macs "
                             "target, drop_layers or sparsity: 2:4")
        return self

    @property
    def cuts(self) -> bool:
        """Whether heads or channels are cut (shares or a MACs target)."""
        return bool(self.heads or self.mlp or self.macs is not None)


class PruneConfig(_Training):
    """Structured pruning: attention heads and MLP channels removed for real, then recovered by distillation
    against the unpruned parent (docs/pruning.md)."""

    name: StageName = Field("prune", description="Stage name: its folder `stages/<name>` and what variants' "
                                                 "`model` refers to.")
    towers: dict[TowerName, PruneTower] = Field(min_length=1, description="Towers to prune; the others stay the "
                                                                          "parent's.")
    importance: Literal["taylor", "magnitude"] = Field(
        "taylor", description="How heads and channels are ranked: `taylor`, |gradient x weight| summed over the "
                              "group, the gradient of a contrastive loss against the parent's own embeddings on "
                              "`importance_batches` train batches; `magnitude`, the L2 norm of the group's weights.")
    importance_batches: PositiveInt = Field(8, description="Train batches the taylor importance is summed over.")
    scope: Literal["layer", "global"] = Field(
        "layer", description="`layer`: every chosen layer loses the same share (uniform shapes). `global`: heads and "
                             "channels ranked across the chosen layers (scores normalised per layer), so layers "
                             "that matter less lose more.")
    round_to: PositiveInt = Field(8, description="Kept MLP channels per layer are rounded to a multiple of this "
                                                 "(matrix kernels run faster on aligned widths).")
    steps: int = Field(300, ge=0, description="Recovery steps: distillation of the pruned model against the "
                                              "unpruned parent (0: none).")
    warmup: int = Field(20, ge=0, description="Linear warm-up steps of the recovery.")
    lr: PositiveFloat = Field(2e-4, description="Peak AdamW learning rate of the recovery.")

    @model_validator(mode="after")
    def _intervals(self):
        if self.steps and self.warmup >= self.steps:
            raise ValueError(f"warmup {self.warmup} must be below steps {self.steps}")
        return self


class StageEntry(Strict):
    """One torch-side stage: a mapping with one key naming its kind."""

    distill: DistillConfig | None = Field(None, description="A smaller student learns from the teacher.")
    prune: PruneConfig | None = Field(None, description="Attention heads and MLP channels removed, then recovered.")

    @model_validator(mode="after")
    def _one(self):
        given = [k for k, v in self if v is not None]
        if len(given) != 1:
            raise ValueError("a stage is a mapping with exactly one key: distill or prune")
        return self

    @property
    def config(self):
        return next(v for _, v in self if v is not None)

    @property
    def kind(self) -> str:
        """'distill' or 'prune': the key the stage was given under."""
        return next(k for k, v in self if v is not None)

# ---- checks ----------------------------------------------------------------------------------------------
class ChecksConfig(Strict):
    runtime: Literal["onnxruntime"] = Field("onnxruntime", description="Runtime the artifacts are checked on.")
    batch_sizes: list[PositiveInt] = Field([1, 16], min_length=1, description="Batch sizes latency is measured at.")
    text_lengths: list[PositiveInt] = Field(
        [], description="Fixed text lengths (tokens) to time the text tower at, besides the eval data's own median "
                        "and p90 lengths (rounded up to a multiple of 8), e.g. `[64, 128]`. Capped at the "
                        "teacher's max_length.")
    audio_seconds: list[Annotated[float, Field(gt=0, le=600)]] = Field(
        [], description="Clip lengths (seconds) to time an audio tower that takes any length (wav2vec2) at, "
                        "besides the eval clips' own median and p90 durations (rounded up to 0.1 s), e.g. "
                        "`[5, 10]`. Towers with a fixed window (CLAP, AST) are timed at their window only.")
    threads: int | None = Field(None, ge=1, description="Threads for PyTorch and ONNX Runtime alike; default: "
                                                        "the cores this process may use (CPU affinity and cgroup "
                                                        "quota, not the host's core count).")
    rounds: int = Field(30, ge=5, description="Interleaved timing rounds per (tower, batch); the median and p90 "
                                              "are over these.")
    warmup: int = Field(5, ge=0, description="Untimed calls per session before timing.")
    recall_k: list[PositiveInt] = Field([1, 5], min_length=1, description="k for retrieval recall@k (image<->text, "
                                                                   "text<->pair).")
    knn_k: int = Field(5, ge=1, description="Image encoders alone: neighbours for the leave-one-out k-NN "
                                            "accuracy on the labelled eval split.")
    budgets: Budgets = Field(default_factory=Budgets, description="Budgets every variant must meet unless it "
                                                                  "overrides them.")


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Run name; the run directory is "
                                                                             "`runs/<name>` unless `--run-dir` says.")
    seed: int = Field(0, ge=0, lt=2 ** 32, description="Seed for data splits and anything random in the stages.")
    teacher: TeacherConfig = Field(description="The model to compress.")
    data: DataConfig = Field(description="Where training, calibration and evaluation data come from.")
    stages: list[StageEntry] = Field([], description="Torch-side stages, in order, each making a new model from "
                                                     "the previous one (distillation, pruning). Export variants name the "
                                                     "model they start from.")
    export: ExportConfig = Field(description="ONNX export and the variants made from it.")
    checks: ChecksConfig = Field(default_factory=ChecksConfig, description="What is measured and the budgets.")

    @model_validator(mode="after")
    def _cross_field(self):
        names = ["teacher"]
        for i, entry in enumerate(self.stages):
            c, kind = entry.config, entry.kind
            if c.name in names:
                raise _CrossFieldError(("stages", i, kind, "name"),
                                       f"stage name {c.name!r} is taken ({'the teacher' if c.name == 'teacher' else 'by an earlier stage'}); give each stage its own name")
            names.append(c.name)
            if isinstance(c, DistillConfig) and self.data.splits.train == 0:
                raise _CrossFieldError(("data", "splits", "train"),
                                       "distillation trains on the train split but data.splits.train is 0; set it "
                                       "(4000 is a good start for the demo)")
            if isinstance(c, PruneConfig) and (c.steps or c.importance == "taylor") and self.data.splits.train == 0:
                raise _CrossFieldError(("data", "splits", "train"),
                                       f"pruning's {'recovery' if c.steps else 'taylor importance'} uses the train "
                                       f"split but data.splits.train is 0; set it (4000 is a good start for the demo)"
                                       + ("" if c.steps else " or use importance: magnitude"))
        for i, v in enumerate(self.export.variants):
            if v.model is not None and v.model not in names:
                raise _CrossFieldError(("export", "variants", i, "model"),
                                       f"{v.model!r} is not a model of this recipe; use one of {', '.join(names)}")
        for i, v in enumerate(self.export.variants):
            if isinstance(v, AutoVariant) and self.data.splits.calibration == 0:
                raise _CrossFieldError(("export", "variants", i, "quantize"),
                                       "quantize: auto measures sensitivity and plans on calibration data but "
                                       "data.splits.calibration is 0; set it (256 is a good start)")
            if isinstance(v, StaticVariant) and self.data.splits.calibration == 0:
                raise _CrossFieldError(("export", "variants", i, "quantize"),
                                       "static int8 needs calibration data but data.splits.calibration is 0; "
                                       "set data.splits.calibration (256 is a good start) or use quantize: dynamic")
            if isinstance(v, StaticVariant) and v.calibration.samples and v.calibration.samples > self.data.splits.calibration:
                raise _CrossFieldError(("export", "variants", i, "calibration", "samples"),
                                       f"{v.calibration.samples} samples asked but data.splits.calibration is "
                                       f"{self.data.splits.calibration}; lower samples or raise the split")
        for j, budgets in self._all_budgets():
            if budgets and budgets.max_latency_ms:
                for tower, per_batch in budgets.max_latency_ms.items():
                    for b in per_batch:
                        if b not in self.checks.batch_sizes:
                            raise _CrossFieldError(j + ("max_latency_ms", tower, b),
                                                   f"batch size {b} is not measured; add it to checks.batch_sizes "
                                                   f"({self.checks.batch_sizes}) or use one of those")
        j = self.export.jetson
        if j is not None:
            by_name = {v.name: v for v in self.export.variants}
            for k, name in enumerate(j.variants or []):
                v = by_name.get(name)
                if v is None:
                    raise _CrossFieldError(("export", "jetson", "variants", k),
                                           f"{name!r} is not a variant of this recipe; use one of {', '.join(by_name)}")
                why = tensorrt_unbuildable(v)
                if why:
                    raise _CrossFieldError(("export", "jetson", "variants", k), f"variant {name}: {why}")
            if j.variants is None and not any(tensorrt_unbuildable(v) is None for v in self.export.variants):
                raise _CrossFieldError(("export", "jetson"),
                                       "no variant TensorRT can build; add one (quantize: none, fp16, or static "
                                       "with target: tensorrt)")
            for key in ("batch", "seq_len"):
                r = getattr(j, key)
                if r is not None and not r[0] <= r[1] <= r[2]:
                    raise _CrossFieldError(("export", "jetson", key), f"{r} must be [min, opt, max] with "
                                                                      f"min <= opt <= max")
            self._jetson_stacks(j)
        return self

    def _jetson_stacks(self, j: "JetsonConfig") -> None:
        """Each JetPack's TensorRT, boards and DLA as the bundles would build them (tensorrt_adapter.refusal),
        and the latency budgets' batches inside the optimisation profile."""
        from mmcompress.runtimes import tensorrt_adapter

        for jp in j.tensorrt or {}:
            if jp not in j.jetpack:
                raise _CrossFieldError(("export", "jetson", "tensorrt", jp),
                                       f"JetPack {jp} is not in export.jetson.jetpack ({', '.join(j.jetpack)}); add "
                                       f"it there or remove this key")
        for k, jp in enumerate(j.jetpack):
            why = tensorrt_adapter.refusal(jp, (j.tensorrt or {}).get(jp), j.boards, j.dla_core)
            if why:
                key, message = why
                path = ("export", "jetson") + ((key, jp) if key == "tensorrt" else (key,))
                raise _CrossFieldError(path, message)
        if j.accuracy_tuner is not None and not any(
                tensorrt_adapter.features(tensorrt_adapter.stack(jp, (j.tensorrt or {}).get(jp))["tensorrt"]).accuracy_tuner
                for jp in j.jetpack):
            raise _CrossFieldError(("export", "jetson", "accuracy_tuner"),
                                   f"the accuracy-aware tuner needs TensorRT >= 11.1 and no listed JetPack has it "
                                   f"({', '.join(j.jetpack)}); add JetPack 7.2.2 or remove accuracy_tuner")
        if j.batch is not None:
            for where, budgets in self._all_budgets():
                for tower, per_batch in ((budgets.max_latency_ms if budgets else None) or {}).items():
                    for b in per_batch:
                        if not j.batch[0] <= b <= j.batch[2]:
                            raise _CrossFieldError(where + ("max_latency_ms", tower, b),
                                                   f"batch {b} is outside export.jetson.batch {j.batch}: the "
                                                   f"engines cannot run it on the board; widen the profile or "
                                                   f"drop this budget")

    def _all_budgets(self):
        yield ("checks", "budgets"), self.checks.budgets
        for i, v in enumerate(self.export.variants):
            yield ("export", "variants", i, "budgets"), v.budgets

    def model_of(self, variant: _Variant) -> str:
        """The model a variant starts from: its `model`, else the last stage's, else 'teacher'."""
        return variant.model or (self.stages[-1].config.name if self.stages else "teacher")

    def budgets_for(self, variant: _Variant) -> Budgets:
        return self.checks.budgets.merged(variant.budgets)

    _origins: dict = PrivateAttr(default_factory=dict)  # key path -> 'file:line' or '--set ...'
    _base: Path = PrivateAttr(default=Path("."))         # the recipe's folder: relative paths start here

    @property
    def base(self) -> Path:
        return self._base

    def where(self, *path) -> str:
        """'recipe.yaml:12 teacher.hf' for error messages (falls back to the nearest parent key's line)."""
        return f"{_recipe_errors.where_for(tuple(path), self._origins) or 'recipe'} {_yaml.format_path(tuple(path))}"


# ---- loading ---------------------------------------------------------------------------------------------
def parse(data: Any, origins: dict, filename: str) -> Recipe:
    """Validate parsed YAML; raise RecipeError listing every problem as `file:line key.path: what; fix`.

    origins: key path -> 'file:line' (or '--set key=value' for command-line overrides)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{filename}:1: a recipe is a YAML mapping with keys name, teacher, data, export, checks")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        raise RecipeError(_recipe_errors.describe(e, Recipe, data, origins, filename)) from None
    recipe._origins = origins
    return recipe


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    data, lines = _yaml.load_file(path)
    origins = {p: f"{path}:{n}" for p, n in lines.items()}
    for arg in overrides or []:
        if not isinstance(data, dict):
            break
        _overrides.apply(data, origins, arg)
    recipe = parse(data, origins, str(path))
    recipe._base = Path(path).resolve().parent
    return recipe
