"""Image-text matching fusion teachers (task itm): Hugging Face ViltForImageAndTextRetrieval (one score) and
BlipForImageTextRetrieval (cross-attention, a 2-way ITM head), loaded from save_pretrained directories, on JSONL
match lines (image, text, match); match AUC vs the teacher, fidelity of the scores."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, invoke
from mmcompress.data import shapes, shapes_vqa

TINY_VQA = ROOT / "recipes" / "vqa-shapes-tiny.yaml"


def _vocab(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *dict.fromkeys(shapes_vqa.WORDS)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=16).save_pretrained(folder)
    return len(vocab)


def _tiny_vilt_retrieval(folder: Path) -> Path:
    import torch
    from transformers import ViltConfig, ViltForImageAndTextRetrieval

    torch.manual_seed(0)
    n = _vocab(folder)
    config = ViltConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=64, patch_size=16, max_position_embeddings=16, vocab_size=n,
                        initializer_range=0.2)  # scores that differ row to row
    ViltForImageAndTextRetrieval(config).save_pretrained(folder)
    return folder


def _tiny_blip_itm(folder: Path, arch: str = "BlipForImageTextRetrieval") -> Path:
    import torch
    import transformers
    from transformers import BlipConfig, BlipImageProcessor

    torch.manual_seed(0)
    n = _vocab(folder)
    config = BlipConfig(
        text_config={"vocab_size": n, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "intermediate_size": 64, "max_position_embeddings": 16, "encoder_hidden_size": 32,
                     "pad_token_id": 0, "sep_token_id": 3, "bos_token_id": 2, "initializer_range": 0.2},
        vision_config={"hidden_size": 32, "image_size": 64, "patch_size": 16, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "intermediate_size": 64, "initializer_range": 0.2},
        projection_dim=32, image_text_hidden_size=32, initializer_range=0.2)  # scores that differ row to row
    getattr(transformers, arch)(config).save_pretrained(folder)
    BlipImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def _match_file(folder: Path, n: int = 48, edit=None) -> Path:
    """n shapes images, each with its own caption (match) or another image's (no match when it differs)."""
    from PIL import Image

    data = shapes.generate(n, seed=3)
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, im in enumerate(data.images):
        Image.fromarray(im).save(folder / "imgs" / f"{i}.png")
        text = data.texts[i] if i % 2 == 0 else data.texts[(i + 7) % n]
        line = {"image": f"imgs/{i}.png", "text": text, "match": text == data.texts[i]}
        lines.append(json.dumps(edit(i, line) if edit else line))
    path = folder / "match.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def _recipe(tmp_path: Path, teacher: Path, data: Path) -> Path:
    r = yaml.safe_load(TINY_VQA.read_text())
    r["teacher"] = {"hf": str(teacher)}
    r["data"] = {"source": "jsonl", "path": str(data), "splits": {"calibration": 8, "eval": 40}}
    r["export"]["variants"] = [{"name": "fp32", "quantize": "none"}, {"name": "int8-dynamic", "quantize": "dynamic"}]
    r["checks"]["budgets"] = {"max_accuracy_drop": 100}
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(r, sort_keys=False))
    return p


@pytest.mark.parametrize("make,arch,head", [(_tiny_vilt_retrieval, "ViltForImageAndTextRetrieval", 1),
                                            (_tiny_blip_itm, "BlipForImageTextRetrieval", 2)])
def test_an_itm_directory_runs_end_to_end_on_match_lines(tmp_path, make, arch, head):
    teacher = make(tmp_path / "model")
    result = invoke("run", str(_recipe(tmp_path, teacher, _match_file(tmp_path))), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["teacher"]["task"] == "itm" and rep["teacher"]["architecture"] == arch
    assert rep["data"]["kind"] == "image-text-match"
    t = rep["artifacts"]["teacher"]["accuracy"]
    assert t["primary"]["metric"] == "match_auc" and 0 <= t["primary"]["value"] <= 100
    assert t["match"]["n"] == 40 and 0 < t["match"]["positives"] < 40
    fp32 = rep["artifacts"]["fp32"]
    assert fp32["accuracy"]["delta"] == 0 and fp32["fidelity"]["fusion"]["min"] > 0.9999  # the graph = the model
    assert (("kl_to_teacher" in fp32["fidelity"]) == (head == 2)) and (("accuracy" in t["match"]) == (head == 2))
    emb = np.load(tmp_path / "run" / "teacher" / "embeddings.npz")["fusion"]
    assert emb.shape == (40, head)


def test_blip_itm_wrapper_gives_the_hugging_face_itm_logits(tmp_path):
    import torch
    from transformers import BlipForImageTextRetrieval

    from mmcompress.models.blip import BlipItm

    model = BlipForImageTextRetrieval.from_pretrained(_tiny_blip_itm(tmp_path / "blip")).eval()
    x, ids = torch.randn(3, 3, 64, 64), torch.randint(5, 20, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[2, 5:] = 0
    with torch.no_grad():
        ref = model(input_ids=ids, pixel_values=x, attention_mask=mask).itm_score
        assert torch.allclose(BlipItm(model)(x, ids, mask), ref, atol=1e-6)


@pytest.mark.parametrize("edit,says", [
    (lambda i, line: {k: v for k, v in line.items() if k != "text"} if i == 5 else line,
     r"match.jsonl:6: missing key 'text'; match lines need"),
    (lambda i, line: {**line, "match": "perhaps"} if i == 9 else line, r"match.jsonl:10: match 'perhaps' is not true/false"),
])
def test_match_file_mistakes_name_file_and_line(tmp_path, edit, says):
    import re

    teacher = _tiny_blip_itm(tmp_path / "model")
    result = invoke("validate", str(_recipe(tmp_path, teacher, _match_file(tmp_path, edit=edit))))
    assert result.exit_code == 2 and re.search(says, " ".join(result.output.split())), result.output


@pytest.mark.parametrize("arch, what", [
    ("BlipForQuestionAnswering", "answers questions by generating the answer's words with a text decoder"),
    ("BlipForConditionalGeneration", "writes captions with a text decoder")])
def test_a_generative_blip_directory_is_refused_naming_what_runs(tmp_path, arch, what):
    """AutoModel used to load these as a BlipModel dual encoder (their text tower left random) and the run failed
    later with 'this teacher is a dual-encoder'; refused before anything runs, saying what to use."""
    teacher = _tiny_blip_itm(tmp_path / "blip", arch)
    recipe = _recipe(tmp_path, teacher, _match_file(tmp_path))
    for cmd in ("validate", "run"):
        result = invoke(cmd, str(recipe), *(["--run-dir", str(tmp_path / "run")] if cmd == "run" else []))
        assert result.exit_code == 2, result.output
        out = " ".join(result.output.split())
        assert (f"recipe.yaml:4 teacher.hf: {teacher} holds a {arch}, which {what}: there is no fixed head to export "
                f"as one graph and check against the teacher. Of BLIP models mmcompress runs "
                f"BlipForImageTextRetrieval (image-text matching, task itm) and BlipModel (image and text "
                f"embeddings, a dual encoder). For question answering use a model with an answer head (a "
                f"ViltForQuestionAnswering directory), or a python entrypoint") in out.replace(str(recipe), "recipe.yaml")
        assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_match_lines_for_a_question_answering_teacher_are_refused(tmp_path):
    from test_fusion import _tiny_vilt

    r = yaml.safe_load(_recipe(tmp_path, _tiny_vilt(tmp_path / "qa"), _match_file(tmp_path)).read_text())
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(r, sort_keys=False))
    result = invoke("run", str(tmp_path / "recipe.yaml"), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code == 2 and "needs images with questions and answers" in result.output, result.output


def test_a_multimodal_classifier_from_a_python_entrypoint_reports_top1(recipes_dir, tmp_path):
    """task='classification': image + text -> one of the head's classes (here the late-fusion example's
    answers, with text/label lines as a classification data set would have)."""
    (tmp_path / "classifier.py").write_text(
        "import sys\nsys.path.insert(0, %r)\nimport late_fusion_teacher\n\n\ndef build():\n"
        "    b = late_fusion_teacher.build()\n    b.task = 'classification'\n    return b\n" % str(recipes_dir))
    from test_fusion import _question_file

    data = _question_file(tmp_path, edit=lambda i, line: {"image": line["image"], "text": line["question"],
                                                          "label": line["answer"]})
    r = yaml.safe_load((recipes_dir / "python-fusion.yaml").read_text())
    r["teacher"] = {"python": "classifier:build"}
    r["data"] = {"source": "jsonl", "path": str(data), "splits": {"calibration": 8, "eval": 32}}
    r["export"]["variants"] = [{"name": "int8-dynamic", "quantize": "dynamic"}]
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(r, sort_keys=False))
    result = invoke("run", str(tmp_path / "recipe.yaml"), "--run-dir", str(tmp_path / "run"))
    assert result.exit_code in (0, 1), result.output
    rep = json.loads((tmp_path / "run" / "report.json").read_text())
    assert rep["teacher"]["task"] == "classification"
    t = rep["artifacts"]["teacher"]["accuracy"]
    assert t["primary"]["metric"] == "top1" and t["classification"]["n"] == 32
    assert rep["artifacts"]["int8-dynamic"]["fidelity"]["top1_agreement"] >= 90
