"""The recipe schema (the single source of truth for recipe keys) and its loader.

Every field has a description; docs/recipe.md is generated from these models (`make docs`) and a test
keeps it in step. Unknown keys are errors (extra="forbid"). Errors name file:line and the key path.
"""
from __future__ import annotations

import difflib
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mmcompress import _yaml
from mmcompress.errors import RecipeError

TowerName = Literal["image", "text"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _CrossFieldError(ValueError):
    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


# ---- teacher ---------------------------------------------------------------------------------------------
class TeacherConfig(Strict):
    """Exactly one of `zoo`, `hf`, `python`."""

    zoo: str | None = Field(None, description="Name of a built-in teacher (`mmcompress zoo list`). `shapes-clip` is "
                                              "the demo CLIP-style dual encoder, trained on first use and cached in "
                                              "the user cache dir.")
    hf: str | None = Field(None, description="A Hugging Face model directory (relative to the recipe), or a hub id "
                                             "already in the local Hugging Face cache; nothing is downloaded. "
                                             "CLIP/SigLIP become an image and a text tower; ViT-family models an "
                                             "image tower; BERT-family models (and sentence-transformers "
                                             "directories) a text tower.")
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


# ---- data ------------------------------------------------------------------------------------------------
class SplitsConfig(Strict):
    train: int = Field(0, ge=0, description="Images for torch-side stages that train (distillation, recovery). "
                                            "Unused when the recipe has no such stage.")
    calibration: int = Field(256, ge=0, description="Images for static int8 calibration.")
    eval: int = Field(1000, ge=1, description="Held-out image/caption pairs every check runs on.")


class PromptsConfig(Strict):
    templates: list[str] | None = Field(
        None, description="Zero-shot prompt templates with the source's placeholders (shapes: `{colour}`, `{shape}`; "
                          "digits: `{digit}`; jsonl and imagefolder: `{label}`). Default: the wording the source's "
                          "captions use (jsonl, imagefolder: 'a photo of a {label}'; an image folder's captions use "
                          "the first template). Use the teacher's training wording: prompts that drop words the "
                          "teacher always saw cost tens of points.")
    ensemble: Literal["max", "mean"] = Field(
        "max", description="How a class's prompts are combined: `max` of the similarities or `mean` of the "
                           "normalised prompt embeddings.")


PLACEHOLDERS = {"shapes": {"colour", "shape"}, "digits": {"digit"}, "jsonl": {"label"}, "imagefolder": {"label"}}
DIGITS_IMAGES = 1797  # scikit-learn's load_digits()


class DataConfig(Strict):
    source: Literal["shapes", "digits", "jsonl", "imagefolder"] = Field(
        description="`shapes`: procedurally drawn coloured shapes with captions (seeded). `digits`: scikit-learn's "
                    "bundled handwritten digits, upscaled, captioned 'a handwritten digit seven'. `jsonl`: your "
                    "lines of {image, caption, label?} or {text, pair?, label?} (docs/data.md). `imagefolder`: "
                    "one folder of images per class.")
    path: str | None = Field(None, description="`jsonl`: the file; `imagefolder`: the root folder. Relative to "
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
        for i, t in enumerate(self.prompts.templates or []):
            used = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
            if used - allowed or not used:
                raise _CrossFieldError(("data", "prompts", "templates", i),
                                       f"template {t!r} must use {', '.join('{' + a + '}' for a in sorted(allowed))} "
                                       f"and nothing else for data.source {self.source}")
        if self.source in ("jsonl", "imagefolder") and not self.path:
            raise _CrossFieldError(("data", "source"), f"data.source {self.source} needs data.path: the "
                                                       f"{'JSONL file' if self.source == 'jsonl' else 'image folder'}")
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
    parity_max_abs: float = Field(1e-3, gt=0, description="Largest allowed |ONNX - PyTorch| over the eval inputs; "
                                                          "beyond it the export stage fails.")
    parity_min_cosine: float = Field(0.9999, gt=0, le=1, description="Smallest allowed per-sample cosine between "
                                                                     "ONNX and PyTorch embeddings.")


class Budgets(Strict):
    max_accuracy_drop: float | None = Field(None, ge=0, description="Largest allowed drop in zero-shot top-1, in "
                                                                      "points, against the teacher in the same run.")
    min_cosine: float | None = Field(None, gt=-1, le=1, description="Smallest allowed per-sample embedding cosine to "
                                                                    "the teacher, per tower (the minimum over eval).")
    min_speedup: float | None = Field(None, gt=0, description="Smallest allowed teacher-median / candidate-median "
                                                              "latency, per tower and batch size.")
    max_latency_ms: dict[TowerName, dict[int, float]] | None = Field(
        None, description="Largest allowed median latency in ms, per tower and batch size: "
                          "`{image: {1: 5.0, 16: 40}}`.")
    max_size_mb: float | None = Field(None, gt=0, description="Largest allowed total size of the artifact's files.")

    def merged(self, override: "Budgets | None") -> "Budgets":
        """This budget with every field the override sets explicitly (null included) replaced."""
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class _Variant(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Artifact name: folder and report row.")
    towers: list[TowerName] = Field(["image", "text"], min_length=1,
                                    description="Towers this variant converts; the others stay ONNX fp32.")
    budgets: Budgets | None = Field(None, description="Per-variant budgets; each key set here replaces "
                                                      "`checks.budgets`' (null switches a budget off).")


class Fp32Variant(_Variant):
    quantize: Literal["none"] = Field(description="No conversion: the exported fp32 ONNX graphs.")


class DynamicVariant(_Variant):
    quantize: Literal["dynamic"] = Field(description="ONNX Runtime `quantize_dynamic`: int8 weights, activations "
                                                     "quantized at run time. No calibration.")
    per_channel: bool = Field(False, description="Per-output-channel weight scales.")
    weight_type: Literal["int8", "uint8"] = Field("int8", description="Weight integer type.")
    op_types: list[str] = Field(["MatMul", "Gemm"], min_length=1, description="ONNX op types to quantize.")


class CalibrationConfig(Strict):
    method: Literal["minmax", "percentile"] = Field(
        "minmax", description="Activation range estimator (ORT calibrators). `entropy` is not offered: through "
                              "`quantize_static` it gives the same ranges as minmax (its bin counts cannot be set). See docs/quantization.md for the "
                              "measured comparison.")
    percentile: float = Field(99.999, gt=90, le=100, description="With `percentile`: the kept percentile.")
    samples: int | None = Field(None, ge=1, description="Calibration images/texts to use; default: the whole "
                                                        "calibration split.")


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


class Fp16Variant(_Variant):
    quantize: Literal["fp16"] = Field(description="Weights and compute in float16 (`onnxruntime.transformers."
                                                  "float16`). Half the size; slower than fp32 on most CPUs: meant "
                                                  "for GPU targets.")
    keep_io_types: bool = Field(True, description="Keep float32 inputs and outputs (casts inside the graph).")


Variant = Annotated[Union[Fp32Variant, DynamicVariant, StaticVariant, Fp16Variant], Field(discriminator="quantize")]


class ExportConfig(Strict):
    onnx: OnnxConfig = Field(default_factory=OnnxConfig, description="ONNX export of each tower.")
    variants: list[Variant] = Field(min_length=1, description="Artifacts made from the ONNX export; every one is "
                                                              "checked against the teacher.")

    @model_validator(mode="after")
    def _unique_names(self):
        names = [v.name for v in self.variants]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise _CrossFieldError(("export", "variants"),
                                   f"variant names must be unique; {', '.join(dup)} appears more than once")
        return self


# ---- checks ----------------------------------------------------------------------------------------------
class ChecksConfig(Strict):
    runtime: Literal["onnxruntime"] = Field("onnxruntime", description="Runtime the artifacts are checked on.")
    batch_sizes: list[int] = Field([1, 16], min_length=1, description="Batch sizes latency is measured at.")
    threads: int | None = Field(None, ge=1, description="Threads for PyTorch and ONNX Runtime alike; default: "
                                                        "the number of cores.")
    rounds: int = Field(30, ge=5, description="Interleaved timing rounds per (tower, batch); the median and p90 "
                                              "are over these.")
    warmup: int = Field(5, ge=0, description="Untimed calls per session before timing.")
    recall_k: list[int] = Field([1, 5], min_length=1, description="k for retrieval recall@k (image<->text, "
                                                                   "text<->pair).")
    knn_k: int = Field(5, ge=1, description="Image encoders alone: neighbours for the leave-one-out k-NN "
                                            "accuracy on the labelled eval split.")
    budgets: Budgets = Field(default_factory=Budgets, description="Budgets every variant must meet unless it "
                                                                  "overrides them.")


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Run name; the run directory is "
                                                                             "`runs/<name>` unless `--run-dir` says.")
    seed: int = Field(0, description="Seed for data splits and anything random in the stages.")
    teacher: TeacherConfig = Field(description="The model to compress.")
    data: DataConfig = Field(description="Where training, calibration and evaluation data come from.")
    export: ExportConfig = Field(description="ONNX export and the variants made from it.")
    checks: ChecksConfig = Field(default_factory=ChecksConfig, description="What is measured and the budgets.")

    @model_validator(mode="after")
    def _cross_field(self):
        for i, v in enumerate(self.export.variants):
            if isinstance(v, StaticVariant) and self.data.splits.calibration == 0:
                raise _CrossFieldError(("export", "variants", i, "quantize"),
                                       f"static int8 needs calibration data but data.splits.calibration is 0; "
                                       f"set data.splits.calibration (256 is a good start) or use quantize: dynamic")
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
        return self

    def _all_budgets(self):
        yield ("checks", "budgets"), self.checks.budgets
        for i, v in enumerate(self.export.variants):
            yield ("export", "variants", i, "budgets"), v.budgets

    def budgets_for(self, variant: _Variant) -> Budgets:
        return self.checks.budgets.merged(variant.budgets)

    _origins: dict = PrivateAttr(default_factory=dict)  # key path -> 'file:line' or '--set ...'
    _base: Path = PrivateAttr(default=Path("."))         # the recipe's folder: relative paths start here

    @property
    def base(self) -> Path:
        return self._base

    def where(self, *path) -> str:
        """'recipe.yaml:12 teacher.hf' for error messages (falls back to the nearest parent key's line)."""
        return f"{_where_for(tuple(path), self._origins) or 'recipe'} {_yaml.format_path(tuple(path))}"


# ---- loading ---------------------------------------------------------------------------------------------
def _model_at(path: tuple, data: Any) -> type[BaseModel] | None:
    """The schema model that holds the key at `path` (for 'did you mean' hints); unions are resolved by the
    data's discriminator value (e.g. `quantize: static` -> StaticVariant)."""
    model: Any = Recipe
    ann: Any = None
    cur = data
    for part in path[:-1]:
        try:
            cur = cur[part]
        except (KeyError, IndexError, TypeError):
            return None
        if isinstance(part, int):
            model = _inner_model(ann, cur)
            continue
        field = model.model_fields.get(part) if model else None
        if field is None:
            return None
        ann = field.annotation
        model = _inner_model(ann, cur)
    return model


def _inner_model(ann: Any, value: Any) -> type[BaseModel] | None:
    """The BaseModel inside an annotation (through list/Optional/Annotated/Union) that fits `value`."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    found = []
    for arg in getattr(ann, "__args__", ()) or ():
        m = _inner_model(arg, value)
        if m is not None:
            found.append(m)
    for m in found:
        tag = m.model_fields.get("quantize")
        if tag is not None and isinstance(value, dict) and value.get("quantize") in getattr(tag.annotation, "__args__", ()):
            return m
    return found[0] if found else None


def _data_path(loc: tuple, data: Any) -> tuple:
    """pydantic's loc with union tags dropped: walk the data, keeping only parts that exist in it."""
    out: tuple = ()
    cur = data
    for part in loc:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
            out += (part,)
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            cur = cur[part]
            out += (part,)
        elif isinstance(cur, dict) and isinstance(part, str) and part not in cur and loc[-1] == part:
            out += (part,)  # a missing or extra key: name it
    return out


def _where_for(path: tuple, origins: dict) -> str | None:
    for n in range(len(path), -1, -1):
        if path[:n] in origins:
            return origins[path[:n]]
    return None


def _explain(err: dict, path: tuple, data: Any) -> str:
    kind, msg = err["type"], err["msg"]
    value = err.get("input")
    key = path[-1] if path else None
    if kind == "extra_forbidden":
        model = _model_at(path, data)
        names = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(names)}"
        return f"unknown key '{key}'; {hint}"
    if kind == "missing":
        return "required key is missing; add it (see docs/recipe.md)"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{value!r} is not one of {expected.replace(' or ', ', ')}"
    if kind == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"{ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"missing the key '{err.get('ctx', {}).get('discriminator', '').strip(chr(39))}' that says which kind this is"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return f"{msg.lower() if msg[:1].isupper() else msg} (got {shown})"


def parse(data: Any, origins: dict, filename: str) -> Recipe:
    """Validate parsed YAML; raise RecipeError listing every problem as `file:line key.path: what; fix`.

    origins: key path -> 'file:line' (or '--set key=value' for command-line overrides)."""
    if not isinstance(data, dict):
        raise RecipeError(f"{filename}:1: a recipe is a YAML mapping with keys name, teacher, data, export, checks")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            ctx_err = err.get("ctx", {}).get("error")
            if isinstance(ctx_err, _CrossFieldError):
                path = _data_path(ctx_err.path, data) or ctx_err.path
                text = ctx_err.message
            else:
                loc = tuple(err["loc"])
                if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
                    loc += (err["ctx"]["discriminator"].strip("'"),)
                path = _data_path(loc, data)
                text = _explain(err, path, data)
            where = _where_for(path, origins) or filename
            problems.append((_sort_key(where), f"{where} {_yaml.format_path(path) or '(top level)'}: {text}"))
        problems.sort(key=lambda p: p[0])
        raise RecipeError("\n".join(dict.fromkeys(text for _, text in problems))) from None
    recipe._origins = origins
    return recipe


def _sort_key(where: str) -> tuple:
    line = where.rsplit(":", 1)[-1]
    return (0, int(line)) if line.isdigit() else (1, 0)


PATH_KEYS = {("teacher", "hf"), ("data", "path"), ("data", "classes_file")}
_TOKEN = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def _override_path(key: str, arg: str) -> tuple:
    parts, pos = [], 0
    for m in _TOKEN.finditer(key):
        if m.start() != pos and key[pos:m.start()] != ".":
            break
        parts.append(m.group(1) if m.group(1) is not None else int(m.group(2)))
        pos = m.end()
    if pos != len(key) or not parts or not isinstance(parts[0], str):
        raise RecipeError(f"--set {arg}: '{key}' is not a key path; write it like teacher.hf or "
                          f"export.variants[1].quantize")
    return tuple(parts)


def apply_override(data: dict, origins: dict, arg: str) -> None:
    """--set key.path=value: value is parsed as YAML (numbers, true/false, null, [lists], {maps})."""
    if "=" not in arg:
        raise RecipeError(f"--set {arg}: expected key.path=value, e.g. --set teacher.hf=/models/clip")
    key, raw = arg.split("=", 1)
    path = _override_path(key.strip(), arg)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {arg}: the value is not valid YAML ({e})") from None
    if path in PATH_KEYS and isinstance(value, str) and not Path(value).is_absolute() and Path(value).exists():
        value = str(Path(value).resolve())  # a path typed on the command line is relative to where you are
    cur = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(cur, list) or part >= len(cur):
                raise RecipeError(f"--set {arg}: {_yaml.format_path(path[:i + 1])} does not exist in the recipe")
            cur = cur[part]
            continue
        if not isinstance(cur, dict):
            raise RecipeError(f"--set {arg}: {_yaml.format_path(path[:i])} is not a mapping")
        cur = cur.setdefault(part, [] if isinstance(nxt, int) else {})
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(cur, list) or last >= len(cur):
            raise RecipeError(f"--set {arg}: {_yaml.format_path(path)} does not exist in the recipe")
    elif not isinstance(cur, dict):
        raise RecipeError(f"--set {arg}: {_yaml.format_path(path[:-1])} is not a mapping")
    cur[last] = value
    for p in [p for p in origins if p[:len(path)] == path]:
        del origins[p]
    origins[path] = f"--set {arg}"


def load(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    data, lines = _yaml.load_file(path)
    origins = {p: f"{path}:{n}" for p, n in lines.items()}
    for arg in overrides or []:
        if not isinstance(data, dict):
            break
        apply_override(data, origins, arg)
    recipe = parse(data, origins, str(path))
    recipe._base = Path(path).resolve().parent
    return recipe
