"""Tiny teachers and data sets written to disk, for trying the bring-your-own recipes and for the tests.

    mmcompress examples recipes/examples      # then: mmcompress run recipes/hf-clip.yaml

Models are randomly initialised, saved with save_pretrained and loaded back through the same code a real
checkpoint uses; data are procedural shapes written as PNG files (and sounds as WAV/FLAC files:
examples_audio.py). Nothing is downloaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["a", "photo", "of", "small", "large", "red", "green", "blue", "yellow", "purple", "orange", "circle",
         "square", "triangle", "bar", "ring", "how", "do", "i", "reset", "the", "device", "hold", "button",
         "for", "five", "seconds", "where", "is", "my", "order", "it", "ships", "in", "two", "days", "shape",
         "question", "about", "shipping", "support"]


def _word_tokenizer(max_length: int):
    from mmcompress.models.shapes_clip import make_tokenizer

    return make_tokenizer(max_length)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _image_processor(out: Path, size: int, crop: bool, mean, std) -> None:
    cfg = {"do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
           "image_mean": list(mean), "image_std": list(std), "resample": 3}
    if crop:
        cfg.update(size={"shortest_edge": size}, crop_size={"height": size, "width": size}, do_center_crop=True)
    else:
        cfg.update(size={"height": size, "width": size})
    _write_json(out / "preprocessor_config.json", cfg)


def _tiny_dual(out: Path, seed: int, config_cls, model_cls, tok, crop: bool, mean, std, **extra) -> Path:
    """A 2+2-layer, hidden-32 dual encoder (32 px images, 16 tokens) around the given tokenizer."""
    import torch

    torch.manual_seed(seed)
    common = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    cfg = config_cls(text_config=dict(vocab_size=len(tok), max_position_embeddings=16, pad_token_id=tok.pad_token_id,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **common),
                     vision_config=dict(image_size=32, patch_size=8, **common), **extra)
    model_cls(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    _image_processor(out, 32, crop, mean, std)
    return out


def tiny_clip(out: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPModel

    return _tiny_dual(out, seed, CLIPConfig, CLIPModel, _word_tokenizer(16), True,
                      (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711), projection_dim=24)


def _sentencepiece_tokenizer(out: Path):
    """SigLIP's own tokenizer class over a word-level sentencepiece model trained on the example vocabulary."""
    import sentencepiece as spm
    from transformers import SiglipTokenizer

    from mmcompress.data import shapes

    work = out / "_spm"
    work.mkdir(parents=True, exist_ok=True)
    (work / "corpus.txt").write_text("\n".join(shapes.captions() + [" ".join(WORDS)] * 5) + "\n")
    spm.SentencePieceTrainer.train(input=str(work / "corpus.txt"), model_prefix=str(work / "spiece"), vocab_size=44,
                                   model_type="word", pad_id=0, unk_id=1, bos_id=-1, eos_id=2, minloglevel=2)
    tok = SiglipTokenizer(vocab_file=str(work / "spiece.model"), model_max_length=16)
    return tok


def tiny_siglip(out: Path, seed: int = 0) -> Path:
    import shutil

    from transformers import SiglipConfig, SiglipModel

    tok = _sentencepiece_tokenizer(out)
    _tiny_dual(out, seed, SiglipConfig, SiglipModel, tok, False, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    shutil.rmtree(out / "_spm")
    return out


def tiny_vit(out: Path, seed: int = 0) -> Path:
    import torch
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2)).save_pretrained(out)
    _image_processor(out, 32, False, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    return out


def _bert_tokenizer(out: Path):
    """A WordPiece tokenizer over WORDS with BERT's normaliser and [CLS] ... [SEP] template, built with the
    tokenizers library (transformers 4.x and 5.x take a vocab file differently; this works in both)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=32)
    fast.save_pretrained(out)
    return fast


def tiny_bert(out: Path, seed: int = 0, initializer_range: float = 0.02) -> Path:
    """initializer_range: BERT's 0.02 leaves random sublayers tiny beside the residual stream; 0.1 makes their
    outputs count, as a trained model's do (what int8 tests need)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    tok = _bert_tokenizer(out)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64,
                         initializer_range=initializer_range)).save_pretrained(out)
    return out


def add_attention_outliers(model, channels: int = 2, scale: float = 64.0, layers: list[int] | None = None) -> list[str]:
    """Give a transformer the activation outliers trained encoders carry, without changing what it computes:
    in each chosen layer, `channels` value-projection output channels are multiplied by `scale` and the
    attention output projection's matching input columns divided by it (attention mixes values linearly, so
    the function is the same). The attention output projection then sees a few channels `scale` times larger
    than the rest: one per-tensor activation scale for all of them is what ruins dynamic int8 on such models
    (and the value projection's weight rows carry the same outlier: per-tensor weight scales suffer too).
    -> the module names of both projections of every chosen layer: the nodes int8 now hurts."""
    import re

    import torch

    mods = dict(model.named_modules())
    pairs = {}
    for name in mods:
        m = re.match(r"^(.*?(?:layer|layers)\.(\d+)\.)(attention\.self\.value|self_attn\.v_proj)$", name)
        if m:
            out = m.group(1) + ("attention.output.dense" if "attention.self" in name else "self_attn.out_proj")
            pairs[int(m.group(2))] = (name, out)
    chosen = sorted(pairs) if layers is None else layers
    with torch.no_grad():
        for i in chosen:
            v, o = mods[pairs[i][0]], mods[pairs[i][1]]
            idx = torch.arange(channels) * (v.out_features // channels)  # spread over the heads
            v.weight[idx] *= scale
            if v.bias is not None:
                v.bias[idx] *= scale
            o.weight[:, idx] /= scale
    return [name for i in chosen for name in pairs[i]]


def train_text_encoder(model, tokenizer, jsonl: Path, steps: int = 200, lr: float = 3e-4, seed: int = 0,
                       template: str = "question about {label}", batch: int = 32) -> float:
    """Train a text encoder briefly on texts_jsonl lines, pooled as mmcompress loads a plain BERT (attention-
    masked mean): InfoNCE of each text against its pair and against its label's prompt, so that the recipe's
    retrieval and nearest-prompt accuracy measure something the model learned. In place; -> the last loss."""
    import torch

    from mmcompress.models.hf import PooledTextTower

    rows = [json.loads(line) for line in Path(jsonl).read_text().splitlines() if line.strip()]
    labels = sorted({r["label"] for r in rows})
    prompts = [template.format(label=name) for name in labels]
    tower = PooledTextTower(model, "mean", normalize=True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)

    def embed(texts):
        t = tokenizer(texts, padding=True, return_tensors="pt")
        return tower(t["input_ids"], t["attention_mask"])

    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        picked = [rows[i] for i in torch.randint(len(rows), (batch,), generator=gen).tolist()]
        text, pair, classes = embed([r["text"] for r in picked]), embed([r["pair"] for r in picked]), embed(prompts)
        y = torch.tensor([labels.index(r["label"]) for r in picked])
        same = torch.tensor([[a["text"] == b["text"] for b in picked] for a in picked])
        pair_logits = (text @ pair.T / 0.05).masked_fill(same & ~torch.eye(batch, dtype=torch.bool), -1e4)
        loss = (torch.nn.functional.cross_entropy(pair_logits, torch.arange(batch))
                + torch.nn.functional.cross_entropy(text @ classes.T / 0.05, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def tiny_sentence_transformer(out: Path, seed: int = 0) -> Path:
    """A BERT directory in the sentence-transformers layout: mean pooling, then Normalize."""
    tiny_bert(out, seed)
    _write_json(out / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}])
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": 24, "do_lower_case": False})
    _write_json(out / "1_Pooling" / "config.json", {"word_embedding_dimension": 32, "pooling_mode_cls_token": False,
                                                    "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                                                    "pooling_mode_mean_sqrt_len_tokens": False})
    (out / "2_Normalize").mkdir(exist_ok=True)
    return out


def shapes_jsonl(out: Path, n: int = 120, seed: int = 0) -> Path:
    """n shape images as PNG files plus data.jsonl lines {image, caption, label}."""
    from PIL import Image

    from mmcompress.data import shapes

    split = shapes.generate(n, seed=seed)
    names = shapes.class_names()
    (out / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (im, text, label) in enumerate(zip(split.images, split.texts, split.labels)):
        Image.fromarray(im).save(out / "images" / f"{i:04d}.png")
        lines.append(json.dumps({"image": f"images/{i:04d}.png", "caption": text, "label": names[label]}))
    (out / "data.jsonl").write_text("\n".join(lines) + "\n")
    return out / "data.jsonl"


def texts_jsonl(out: Path, n: int = 80, seed: int = 0) -> Path:
    """n lines {text, pair, label}: questions paired with answers, labelled by topic."""
    rng = np.random.default_rng(seed)
    topics = {"support": ("how do i reset the {c} device", "hold the {c} button for five seconds"),
              "shipping": ("where is my {c} order", "it ships in two days {c}")}
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    lines = []
    for _ in range(n):
        label = ["support", "shipping"][int(rng.integers(2))]
        c = colours[int(rng.integers(len(colours)))]
        q, a = topics[label]
        lines.append(json.dumps({"text": q.format(c=c), "pair": a.format(c=c), "label": label}))
    out.mkdir(parents=True, exist_ok=True)
    (out / "texts.jsonl").write_text("\n".join(lines) + "\n")
    return out / "texts.jsonl"


def imagefolder(out: Path, per_class: int = 12, seed: int = 0) -> Path:
    from PIL import Image

    from mmcompress.data import shapes

    rng = np.random.default_rng(seed)
    for shape in ["circle", "square", "triangle"]:
        (out / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            r = float(rng.uniform(8, 18))
            cx, cy = rng.uniform(r + 2, 62 - r, size=2)
            im = shapes.draw(shape, shapes.COLOURS["red"], r, float(cx), float(cy), 0.0, (10, 10, 10))
            Image.fromarray(im).save(out / shape / f"{i:03d}.png")
    return out


MAKERS = {"tiny-clip": tiny_clip, "tiny-siglip": tiny_siglip, "tiny-vit": tiny_vit, "tiny-bert": tiny_bert,
          "tiny-sentence-transformer": tiny_sentence_transformer, "shapes-jsonl": shapes_jsonl,
          "texts-jsonl": texts_jsonl, "shapes-folder": imagefolder}


def write_all(root: Path) -> dict[str, Path]:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # random tiny configs trip config warnings that mean nothing here
    hf_logging.disable_progress_bar()
    from mmcompress import examples_audio

    root = Path(root)
    return {name: make(root / name) for name, make in {**MAKERS, **examples_audio.MAKERS}.items()}
