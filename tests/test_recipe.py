"""Recipe errors name file:line, the key path and the fix; the exact text is part of the interface."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ROOT, invoke
from mmcompress import recipe
from mmcompress.errors import RecipeError

GOOD = """\
name: demo
teacher:
  zoo: shapes-clip-tiny
data:
  source: shapes
  splits: {calibration: 16, eval: 32}
export:
  variants:
    - {name: fp32, quantize: none}
    - name: int8
      quantize: static
      calibration: {method: minmax}
checks:
  batch_sizes: [1, 4]
  budgets: {max_accuracy_drop: 1.0}
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "recipe.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    p = write(tmp_path, text)
    with pytest.raises(RecipeError) as e:
        recipe.load(p)
    return str(e.value).replace(str(p), "recipe.yaml")


def test_good_recipe_loads_with_defaults(tmp_path):
    r = recipe.load(write(tmp_path, GOOD))
    assert r.name == "demo"
    assert r.export.onnx.opset == 18
    static = r.export.variants[1]
    assert isinstance(static, recipe.StaticVariant)
    assert (static.activation_type, static.op_types, static.per_channel) == ("uint8", ["MatMul", "Gemm"], True)
    assert r.checks.rounds == 30


def test_misspelled_key_names_line_path_and_suggestion(tmp_path):
    text = GOOD.replace("calibration: {method: minmax}", "calibraton: {method: minmax}")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:12 export.variants[1].calibraton: unknown key 'calibraton'; did you mean 'calibration'?")


def test_bad_choice_lists_the_choices(tmp_path):
    text = GOOD.replace("method: minmax", "method: minmx")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:12 export.variants[1].calibration.method: 'minmx' is not one of 'minmax', 'percentile'")


def test_bad_variant_kind(tmp_path):
    text = GOOD.replace("quantize: static", "quantize: statc")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:11 export.variants[1].quantize: 'statc' is not one of 'none', 'dynamic', 'static', 'fp16', 'bf16', 'auto'")


def test_wrong_type_names_value(tmp_path):
    text = GOOD.replace("batch_sizes: [1, 4]", "batch_sizes: [1, four]")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:14 checks.batch_sizes[1]: input should be a valid integer, unable to parse string as an "
        "integer (got 'four')")


def test_missing_required_key(tmp_path):
    text = GOOD.replace("  source: shapes\n", "")
    assert error_of(tmp_path, text) == "recipe.yaml:4 data.source: required key is missing; add it (see docs/recipe.md)"


def test_cross_field_static_needs_calibration(tmp_path):
    text = GOOD.replace("calibration: 16", "calibration: 0")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:11 export.variants[1].quantize: static int8 needs calibration data but data.splits.calibration "
        "is 0; set data.splits.calibration (256 is a good start) or use quantize: dynamic")


def test_latency_budget_for_unmeasured_batch(tmp_path):
    text = GOOD.replace("{max_accuracy_drop: 1.0}", "{max_latency_ms: {image: {8: 5.0}}}")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:15 checks.budgets.max_latency_ms.image[8]: batch size 8 is not measured; add it to "
        "checks.batch_sizes ([1, 4]) or use one of those")


def test_unknown_zoo_teacher_suggests(tmp_path):
    text = GOOD.replace("zoo: shapes-clip-tiny", "zoo: shapes-clp")
    err = error_of(tmp_path, text)
    assert err.startswith("recipe.yaml:3 teacher.zoo: 'shapes-clp' is not a zoo teacher (shapes-clip, ")
    assert err.endswith("did you mean 'shapes-clip'?")


def test_duplicate_variant_names(tmp_path):
    text = GOOD.replace("- name: int8", "- name: fp32")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:10 export.variants[1].name: 'fp32' is already the name of export.variants[0]; give each "
        "variant its own name (it is its folder and report row)")


def validate_error(tmp_path: Path, text: str) -> str:
    """`mmcompress validate` on the recipe text: exit 2, no traceback; -> the error line, recipe path shortened."""
    p = write(tmp_path, text)
    result = invoke("validate", str(p))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split()).replace(str(p), "recipe.yaml").replace(str(tmp_path), "TMP")


JSONL = GOOD.replace("  source: shapes\n", "  source: jsonl\n  path: data/missing.jsonl\n")


@pytest.mark.parametrize("text, says", [
    # after the schema: the checks that read the disk name the recipe line too
    (GOOD.replace("- name: int8", "- name: fp32"),
     "error: recipe.yaml:10 export.variants[1].name: 'fp32' is already the name of export.variants[0]"),
    (JSONL, "error: recipe.yaml:6 data.path: TMP/data/missing.jsonl does not exist; set data.path to a JSONL file "
            "with one JSON object per line (relative to the recipe; given with --set, relative to where you run)"),
    (JSONL.replace("source: jsonl", "source: imagefolder").replace("missing.jsonl", "folder"),
     "error: recipe.yaml:6 data.path: TMP/data/folder does not exist; set data.path to a folder with one "
     "sub-folder of images per class (imagefolder)"),
    (JSONL.replace("missing.jsonl", "d.jsonl\n  classes_file: classes.json"),
     "error: recipe.yaml:7 data.classes_file: TMP/classes.json does not exist; set data.classes_file to a JSON "
     "list of class names (relative to the recipe)"),
])
def test_errors_found_after_the_schema_name_their_line(tmp_path, text, says):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d.jsonl").write_text('{"text": "a", "label": "x"}\n' * 60)
    assert says in validate_error(tmp_path, text)


def test_template_placeholders_checked(tmp_path):
    text = GOOD.replace("  splits:", "  prompts: {templates: ['a {color} {shape}']}\n  splits:")
    assert error_of(tmp_path, text) == (
        "recipe.yaml:6 data.prompts.templates[0]: template 'a {color} {shape}' must use {colour}, {shape} and "
        "nothing else for data.source shapes")


def test_all_errors_reported_at_once(tmp_path):
    text = GOOD.replace("seed", "x").replace("name: demo", "name: demo\nsed: 1").replace("opset", "x")
    text = text.replace("method: minmax", "method: minmx").replace("batch_sizes: [1, 4]", "batch_sizes: 3")
    lines = error_of(tmp_path, text).splitlines()
    assert lines[0] == "recipe.yaml:2 sed: unknown key 'sed'; did you mean 'seed'?"
    assert len(lines) == 3


def test_invalid_yaml_names_line(tmp_path):
    assert error_of(tmp_path, "name: x\nteacher: [\n") .startswith("recipe.yaml:3: not valid YAML: ")


def test_not_a_mapping(tmp_path):
    assert error_of(tmp_path, "- a\n- b\n") == (
        "recipe.yaml:1: a recipe is a YAML mapping with keys name, teacher, data, export, checks")


def test_cli_validate_exit_codes(tmp_path):
    ok = invoke("validate", str(write(tmp_path, GOOD)))
    assert ok.exit_code == 0 and ": ok (demo: 2 variants" in ok.output
    bad = invoke("validate", str(write(tmp_path, GOOD.replace("source: shapes", "source: shape"))))
    assert bad.exit_code == 2
    assert "data.source: 'shape' is not one of 'shapes', 'shapes-vqa', 'digits'" in bad.output
    missing = invoke("validate", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "no such recipe file" in missing.output


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "recipes").glob("*.yaml")))
def test_every_shipped_recipe_validates(recipes_dir, name):
    import torch

    result = invoke("validate", str(recipes_dir / name))
    if "runtime: torch-cuda" in (recipes_dir / name).read_text() and not torch.cuda.is_available():
        assert result.exit_code == 4 and "needs a CUDA device" in result.output, result.output  # GPU recipes
        return
    assert result.exit_code == 0, result.output


def test_budget_override_merges_explicit_keys_only():
    base = recipe.Budgets(max_accuracy_drop=1.0, min_cosine=0.99)
    over = recipe.Budgets.model_validate({"min_speedup": 1.5, "min_cosine": None})
    merged = base.merged(over)
    assert (merged.max_accuracy_drop, merged.min_cosine, merged.min_speedup) == (1.0, None, 1.5)


def _doc_recipes():
    import re

    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", doc.read_text(), re.S)):
            if block.startswith("name:"):
                yield pytest.param(block, id=f"{doc.name}-{i}")


@pytest.mark.parametrize("text", list(_doc_recipes()))
def test_every_recipe_in_the_docs_validates(recipes_dir, text):
    path = recipes_dir / "doc-recipe.yaml"  # beside the examples, like the shipped recipes
    path.write_text(text)
    result = invoke("validate", str(path))
    assert result.exit_code == 0, result.output


def _validate_error(tmp_path: Path, text: str) -> str:
    """`mmcompress validate` on text: exit 2 and the message, with the temp path shown as recipe.yaml."""
    p = write(tmp_path, text)
    result = invoke("validate", str(p))
    assert result.exit_code == 2, result.output
    return result.output.replace(str(p), "recipe.yaml").strip()


def test_a_key_written_twice_is_an_error(tmp_path):
    text = GOOD.replace("  source: shapes\n", "  source: shapes\n  source: digits\n")
    assert _validate_error(tmp_path, text) == (
        "error: recipe.yaml:6 data.source: key written twice (first at line 5); keep one")


def test_keys_that_do_not_apply_to_the_teacher_or_data(tmp_path):
    pooling = GOOD.replace("  zoo: shapes-clip-tiny\n", "  zoo: shapes-clip-tiny\n  pooling: cls\n")
    assert _validate_error(tmp_path, pooling) == (
        "error: recipe.yaml:4 teacher.pooling: pooling applies to single-tower hf encoders, not to a zoo teacher; "
        "remove the key")
    path = GOOD.replace("  source: shapes\n", "  source: shapes\n  path: data.jsonl\n")
    assert _validate_error(tmp_path, path) == (
        "error: recipe.yaml:6 data.path: data.source shapes is built in: it has no files and fixed classes; "
        "remove the key")


def test_max_length_beyond_the_models_positions(tmp_path):
    text = GOOD.replace("  zoo: shapes-clip-tiny\n", "  zoo: shapes-clip-tiny\n  max_length: 16\n")
    assert _validate_error(tmp_path, text) == (
        "error: recipe.yaml:4 teacher.max_length: 16 tokens is more than the model's 8 text positions; use at most 8")


@pytest.mark.parametrize("replace,where", [
    ("batch_sizes: [1, 4]", "checks.batch_sizes[0]"), ("max_accuracy_drop: 1.0", "checks.budgets.max_accuracy_drop")])
def test_non_positive_and_out_of_range_values(tmp_path, replace, where):
    bad = {"batch_sizes: [1, 4]": "batch_sizes: [0, 4]", "max_accuracy_drop: 1.0": "max_accuracy_drop: .nan"}[replace]
    out = _validate_error(tmp_path, GOOD.replace(replace, bad))
    assert out.startswith("error: recipe.yaml:") and where in out
