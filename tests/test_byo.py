"""Bring your own teacher and data: tiny HF models saved with save_pretrained, a python entrypoint, JSONL and
image-folder data, all through the same loading code a real checkpoint or data set uses."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import invoke
from mmcompress.recipe import load


def run(recipes_dir, name, *extra, run_dir):
    result = invoke("run", str(recipes_dir / name), "--run-dir", str(run_dir), *extra)
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else None
    return result, report


# a tokenizers-library tokenizer loads as PreTrainedTokenizerFast in transformers 4, TokenizersBackend in 5
@pytest.mark.parametrize("recipe,arch,tokenizers", [
    ("hf-clip.yaml", "CLIPModel", {"PreTrainedTokenizerFast", "TokenizersBackend"}),
    ("hf-siglip.yaml", "SiglipModel", {"SiglipTokenizer"})])
def test_hf_dual_encoders_export_quantize_and_check(recipes_dir, tmp_path, recipe, arch, tokenizers):
    result, report = run(recipes_dir, recipe, run_dir=tmp_path)
    assert result.exit_code == 0, result.output
    assert report["teacher"]["kind"] == "hf" and report["teacher"]["architecture"] == arch
    export = json.loads((tmp_path / "export-onnx" / "manifest.json").read_text())
    pre = export["files"]["text.onnx"]["preprocess"]
    assert pre["max_length"] == 16 and pre["tokenizer"] in tokenizers
    # SigLIP pools the last position: it keeps its fixed length; CLIP pads each batch to its longest text
    assert pre["padding"] == ("max_length" if arch == "SiglipModel" else "longest")
    assert report["teacher"]["task"] == "dual-encoder" and report["teacher"]["towers"] == ["image", "text"]
    # int8-path dependent: on AVX2 (no VNNI) 8-bit weights saturated this tiny SigLIP's image tower to 0.86
    # (static); export.target: auto gives 7-bit weights there and 8-bit on VNNI, so 0.95 holds on both kinds
    static = report["artifacts"]["int8-static"]
    assert static["int8"]["target"] in ("avx2", "avx512", "vnni", "amx", "arm64")
    assert static["fidelity"]["image"]["min"] > 0.95 and static["fidelity"]["text"]["min"] > 0.95
    assert {"zero_shot", "recall", "mixed"} <= set(static["accuracy"])
    assert report["data"]["source"] == "jsonl" and report["data"]["splits"]["eval"] == 64


def test_hf_vit_image_encoder_on_image_folder(recipes_dir, tmp_path):
    result, report = run(recipes_dir, "hf-vit-imagefolder.yaml", run_dir=tmp_path)
    assert result.exit_code == 0, result.output
    assert report["teacher"]["task"] == "image-encoder" and report["teacher"]["pooling"] == "cls"
    teacher = report["artifacts"]["teacher"]["accuracy"]
    assert teacher["primary"]["metric"] == "knn_top1" and teacher["knn"]["k"] == 3
    assert report["data"]["classes"] == 3
    assert report["artifacts"]["int8-dynamic"]["fidelity"]["image"]["min"] > 0.95


def test_sentence_transformer_text_encoder(recipes_dir, tmp_path):
    result, report = run(recipes_dir, "hf-sentence-transformer.yaml", run_dir=tmp_path)
    assert result.exit_code == 0, result.output
    t = report["teacher"]
    assert (t["task"], t["pooling"], t["normalize"], t["sentence_transformers"]) == ("text-encoder", "mean", True, True)
    acc = report["artifacts"]["int8-dynamic"]["accuracy"]
    assert {"recall", "class_prompts"} <= set(acc) and "text_to_pair@1" in acc["recall"]
    assert report["artifacts"]["int8-dynamic"]["fidelity"]["text"]["min"] >= 0.99
    assert report["artifacts"]["int8-static"]["fidelity"]["text"]["min"] >= 0.99
    # short texts (6-11 tokens) under a 24-token limit: timed at the data's lengths, not padded to 24
    lengths = report["checks"]["text_lengths"]
    assert lengths and all(x["seq_len"] < 24 and x["from"].startswith("eval") for x in lengths)
    keys = set(report["artifacts"]["teacher"]["latency"]["text"])
    assert keys == {f"{b}@{x['seq_len']}" for b in (1, 8) for x in lengths}
    export = json.loads((tmp_path / "export-onnx" / "manifest.json").read_text())["files"]["text.onnx"]
    assert export["preprocess"]["padding"] == "longest"
    assert export["parity"]["padded_to_max"]["cosine_min"] > 0.9999  # the graph holds at 24 tokens too
    assert max(export["parity"]["lengths"]) < 24


def test_sentence_transformer_pooling_matches_the_reference_formula(recipes_dir):
    from transformers import AutoModel, AutoTokenizer

    from mmcompress.models import load_teacher

    r = load(recipes_dir / "hf-sentence-transformer.yaml")
    bundle = load_teacher(r.teacher, r.base)
    texts = ["how do i reset the red device", "where is my order"]
    feeds = bundle.text_preprocess(texts)
    assert bundle.text_preprocess.max_length == 24  # sentence_bert_config.json max_seq_length
    unk = bundle.text_preprocess.tokenizer.unk_token_id
    assert unk not in feeds["input_ids"] and feeds["attention_mask"].sum(1).tolist() == [9, 6]  # [CLS] words [SEP]
    with torch.no_grad():
        ours = bundle.towers["text"](*(torch.from_numpy(feeds[k]) for k in ("input_ids", "attention_mask")))
        path = recipes_dir / "examples" / "tiny-sentence-transformer"
        model = AutoModel.from_pretrained(path).eval()
        enc = AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
        h = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_plain_bert_directory_uses_mean_pooling_without_normalize(recipes_dir, tmp_path):
    result, report = run(recipes_dir, "hf-sentence-transformer.yaml", "--set", "teacher.hf=examples/tiny-bert",
                         run_dir=tmp_path)
    assert result.exit_code == 0, result.output
    assert (report["teacher"]["pooling"], report["teacher"]["normalize"]) == ("mean", False)
    assert report["teacher"]["sentence_transformers"] is False


def test_python_entrypoint_dual_encoder(recipes_dir, tmp_path):
    result, report = run(recipes_dir, "python-entrypoint.yaml", run_dir=tmp_path)
    assert result.exit_code == 0, result.output
    t = report["teacher"]
    assert t["kind"] == "python" and t["entrypoint"] == "tiny_teacher:build"
    assert t["note"] == "imported because the recipe names it" and t["file"].endswith("tiny_teacher.py")
    assert report["artifacts"]["int8-dynamic"]["fidelity"]["image"]["min"] > 0.99


def test_python_entrypoint_is_built_once_before_anything_runs(recipes_dir, tmp_path):
    """preflight builds it (validate checks the recipe keys and data against its towers); the run reuses it."""
    calls = tmp_path / "calls"
    (recipes_dir / "counted_teacher.py").write_text(
        "import tiny_teacher\n\n\ndef build():\n"
        f"    with open({str(calls)!r}, 'a') as f:\n        f.write('x')\n    return tiny_teacher.build()\n")
    recipe = str(recipes_dir / "python-entrypoint.yaml")
    bad = invoke("validate", recipe, "--set", "teacher.python=counted_teacher:build", "--set", "teacher.pooling=cls")
    assert bad.exit_code == 2, bad.output  # a key for single-tower hf encoders: found by validate, not by run only
    assert "teacher.pooling: pooling applies to single-tower hf encoders, not to a python entrypoint" in bad.output
    calls.unlink()
    result, report = run(recipes_dir, "python-entrypoint.yaml", "--set", "teacher.python=counted_teacher:build",
                         "--set", "export.variants=[{name: fp32, quantize: none}]", "--set", "checks.batch_sizes=[1]",
                         run_dir=tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert calls.read_text() == "x" and report["teacher"]["entrypoint"] == "counted_teacher:build"


def test_python_entrypoint_that_raises_shows_its_own_traceback(recipes_dir, tmp_path):
    (recipes_dir / "raising_teacher.py").write_text(
        "def _weights():\n    raise FileNotFoundError('/models/x.pt')\n\n\ndef build():\n    return _weights()\n")
    result = invoke("validate", str(recipes_dir / "python-entrypoint.yaml"), "--set", "teacher.python=raising_teacher:build")
    assert result.exit_code == 3, result.output  # the user's code failed: not a recipe error, not an internal one
    assert ("--set teacher.python=raising_teacher:build teacher.python: raising_teacher:build() raised "
            "FileNotFoundError: /models/x.pt") in result.output
    assert "raising_teacher.py:2 in _weights: raise FileNotFoundError" in result.output
    assert "internal error" not in result.output and "Traceback" not in result.output


@pytest.fixture
def broken_data(recipes_dir, tmp_path):
    """A second copy of the JSONL set, to break."""
    src = recipes_dir / "examples" / "shapes-jsonl"
    dst = tmp_path / "data"
    shutil.copytree(src, dst)
    return dst


def test_jsonl_line_that_is_not_json_exits_2_naming_file_and_line(recipes_dir, broken_data):
    lines = (broken_data / "data.jsonl").read_text().splitlines()
    lines[6] = lines[6][:-1]  # drop the closing brace of line 7
    (broken_data / "data.jsonl").write_text("\n".join(lines) + "\n")
    for cmd in ("validate", "run"):
        result = invoke(cmd, str(recipes_dir / "hf-clip.yaml"), "--set", f"data.path={broken_data / 'data.jsonl'}")
        assert result.exit_code == 2
        assert f"error: {broken_data / 'data.jsonl'}:7: not JSON (Expecting ',' delimiter at column" in result.output


def test_missing_and_undecodable_images_exit_2_naming_line(recipes_dir, broken_data):
    (broken_data / "images" / "0003.png").unlink()
    result = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", f"data.path={broken_data / 'data.jsonl'}")
    assert result.exit_code == 2
    assert (f"{broken_data / 'data.jsonl'}:4: image 'images/0003.png' not found (looked for "
            f"{broken_data / 'images' / '0003.png'}); image paths are relative to the JSONL file") in result.output
    (broken_data / "images" / "0003.png").write_bytes(b"not a png")
    result = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", f"data.path={broken_data / 'data.jsonl'}")
    assert result.exit_code == 2 and "data.jsonl:4: image 'images/0003.png' cannot be decoded" in result.output


def test_jsonl_missing_key(recipes_dir, broken_data):
    lines = (broken_data / "data.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"image": "images/0001.png", "label": "red circle"})
    (broken_data / "data.jsonl").write_text("\n".join(lines) + "\n")
    result = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", f"data.path={broken_data / 'data.jsonl'}")
    assert result.exit_code == 2
    assert ("data.jsonl:2: missing key 'caption' (line 1 has one); give every image line a caption, or none (a "
            "teacher without a text tower reads none)") in result.output


def test_captions_are_needed_only_where_a_check_reads_them(recipes_dir, broken_data, tmp_path):
    data = broken_data / "data.jsonl"
    lines = [json.loads(x) for x in data.read_text().splitlines()]
    data.write_text("".join(json.dumps({k: v for k, v in x.items() if k != "caption"}) + "\n" for x in lines))
    # a dual encoder's retrieval and its text tower's calibration read the captions: refused at the first line,
    # by validate as by run, for an hf directory and a python entrypoint alike
    for recipe_file in ("hf-clip.yaml", "python-entrypoint.yaml"):
        result = invoke("validate", str(recipes_dir / recipe_file), "--set", f"data.path={data}")
        assert result.exit_code == 2, result.output
        assert (f"error: {data}:1: missing key 'caption'; the teacher's text tower reads the captions (image-text "
                f"retrieval, the text tower's calibration), so image lines need \"image\" and \"caption\" (or keep "
                f"only the image tower: teacher.towers: [image])") in " ".join(result.output.split())
    # an image encoder reads none: the same lines run
    result, report = run(recipes_dir, "hf-vit-imagefolder.yaml", "--set", "data.source=jsonl", "--set",
                         f"data.path={data}", "--set", "export.variants=[{name: int8-dynamic, quantize: dynamic}]",
                         "--set", "checks.batch_sizes=[1]", run_dir=tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert report["teacher"]["task"] == "image-encoder" and report["data"]["source"] == "jsonl"
    assert report["artifacts"]["int8-dynamic"]["fidelity"]["image"]["min"] > 0.95


def _truncate(path, size=None):
    import os

    os.truncate(path, os.path.getsize(path) // 2 if size is None else size)


def _as_torch_bin(folder):
    """The directory with its weights as a torch.save file (what older save_pretrained wrote), cut in half."""
    from transformers import AutoModel

    torch.save(AutoModel.from_pretrained(folder).state_dict(), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    _truncate(folder / "pytorch_model.bin")
    return "pytorch_model.bin", "is truncated or corrupt: a torch.save file is a zip archive and this one does not read as one"


def _half_safetensors(folder):
    f = folder / "model.safetensors"
    size = f.stat().st_size
    _truncate(f)
    return "model.safetensors", f"is truncated: its header says the file has {size} bytes, and it has {size // 2}"


def _garbled_header(folder):
    f = folder / "model.safetensors"
    with open(f, "r+b") as out:
        out.write(b"\xff" * 8)
    return "model.safetensors", (f"is truncated or corrupt: its first 8 bytes say a {2 ** 64 - 1}-byte header "
                                 f"follows, and the file has {f.stat().st_size}")


@pytest.mark.parametrize("damage", [_half_safetensors, _garbled_header, _as_torch_bin])
def test_a_damaged_weights_file_is_named_with_the_fix(recipes_dir, tmp_path, damage):
    """A copy cut short used to fail deep inside safetensors (exit 3, no file named); the headers are checked
    before anything runs."""
    folder = tmp_path / "vit"
    shutil.copytree(recipes_dir / "examples" / "tiny-vit", folder)
    name, why = damage(folder)
    for cmd in ("validate", "run"):
        result = invoke(cmd, str(recipes_dir / "hf-vit-imagefolder.yaml"), "--set", f"teacher.hf={folder}",
                        *(["--run-dir", str(tmp_path / "run")] if cmd == "run" else []))
        assert result.exit_code == 2, result.output
        out = " ".join(result.output.split())
        assert f"--set teacher.hf={folder} teacher.hf: {folder / name} {why}" in out
        assert "copy the file again from where the model was saved (or save_pretrained the model again)" in out
        assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_hub_id_not_on_disk_is_a_recipe_error(recipes_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", "teacher.hf=someorg/not-here")
    assert result.exit_code == 2
    assert "--set teacher.hf=someorg/not-here teacher.hf: 'someorg/not-here' is not a directory" in result.output
    assert "mmcompress downloads nothing at run time" in result.output


def test_override_is_validated_like_the_file_and_named(recipes_dir):
    result = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", "checks.rounds=two")
    assert result.exit_code == 2
    assert ("error: --set checks.rounds=two checks.rounds: input should be a valid integer, unable to parse "
            "string as an integer (got 'two')") in result.output
    bad = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", "export.variants[9].quantize=dynamic")
    assert bad.exit_code == 2 and "export.variants[9] does not exist in the recipe" in bad.output
    ok = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", "export.variants[2].quantize=fp16")
    assert ok.exit_code == 0, ok.output


def test_exactly_one_teacher_kind(tmp_path, recipes_dir):
    result = invoke("validate", str(recipes_dir / "hf-clip.yaml"), "--set", "teacher.zoo=shapes-clip-tiny")
    assert result.exit_code == 2
    assert "teacher: give exactly one of zoo, hf, python (got zoo, hf)" in result.output


def test_image_preprocessing_matches_the_transformers_processor(recipes_dir):
    from transformers import CLIPImageProcessor

    from mmcompress.models.hf import image_preprocess

    path = recipes_dir / "examples" / "tiny-clip"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=s, dtype=np.uint8) for s in [(40, 57, 3), (64, 33, 3), (32, 32, 3)]]
    ours = image_preprocess(path)(images)
    ref = CLIPImageProcessor.from_pretrained(path)(images=images, return_tensors="np")["pixel_values"]
    assert ours.shape == ref.shape == (3, 3, 32, 32)
    assert np.abs(ours - ref).max() < 1e-4


def test_hub_id_already_in_the_local_cache_is_used(recipes_dir, tmp_path, monkeypatch):
    # the layout huggingface_hub writes: models--ORG--NAME/refs/main -> snapshots/<revision>/
    repo = tmp_path / "hub" / "models--someorg--tiny-clip"
    shutil.copytree(recipes_dir / "examples" / "tiny-clip", repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from mmcompress.models import hf

    path = hf.resolve("someorg/tiny-clip", recipes_dir)
    assert path == repo / "snapshots" / "abc123"


def test_dual_encoder_without_labels_gates_on_retrieval(recipes_dir, broken_data, tmp_path):
    lines = [json.loads(x) for x in (broken_data / "data.jsonl").read_text().splitlines()]
    (broken_data / "data.jsonl").write_text("".join(json.dumps({k: v for k, v in x.items() if k != "label"}) + "\n"
                                                    for x in lines))
    result, report = run(recipes_dir, "hf-clip.yaml", "--set", f"data.path={broken_data / 'data.jsonl'}",
                         "--set", "checks.budgets.max_accuracy_drop=5", "--set", "checks.batch_sizes=[1]",
                         "--set", "export.variants=[{name: int8-dynamic, quantize: dynamic}]", run_dir=tmp_path / "run")
    assert result.exit_code == 0, result.output
    acc = report["artifacts"]["int8-dynamic"]["accuracy"]
    assert acc["primary"]["metric"] == "image_to_text@1" and "zero_shot" not in acc
    assert report["artifacts"]["int8-dynamic"]["budgets"][0]["budget"] == "max_accuracy_drop"


def test_variant_for_a_tower_the_teacher_lacks_is_a_recipe_error(recipes_dir, tmp_path):
    result, _ = run(recipes_dir, "hf-sentence-transformer.yaml", "--set", "export.variants[1].towers=[image]",
                    run_dir=tmp_path)
    assert result.exit_code == 2
    assert ("--set export.variants[1].towers=[image] export.variants[1].towers: the teacher has no image tower "
            "(it has text); list only those") in result.output


def test_pooling_choices_follow_their_formulas(recipes_dir):
    from transformers import AutoModel

    from mmcompress.models.hf import PooledImageTower, PooledTextTower

    vit = AutoModel.from_pretrained(recipes_dir / "examples" / "tiny-vit").eval()
    x = torch.randn(3, 3, 32, 32)
    bert = AutoModel.from_pretrained(recipes_dir / "examples" / "tiny-bert").eval()
    ids = torch.tensor([[2, 10, 11, 3, 0], [2, 12, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        h = vit(pixel_values=x).last_hidden_state  # (3, 1 + 16 patches, 32)
        assert torch.allclose(PooledImageTower(vit, "mean", False)(x), h[:, 1:].mean(1), atol=1e-6)
        assert torch.allclose(PooledImageTower(vit, "cls", True)(x), torch.nn.functional.normalize(h[:, 0], dim=-1), atol=1e-6)
        t = bert(input_ids=ids, attention_mask=mask)
        assert torch.allclose(PooledTextTower(bert, "cls", False)(ids, mask), t.last_hidden_state[:, 0], atol=1e-6)
        assert torch.allclose(PooledTextTower(bert, "pooler", False)(ids, mask), t.pooler_output, atol=1e-6)
