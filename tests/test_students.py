"""Students built from the teacher: same class, fewer layers / narrower tower, initialised from its weights."""
from __future__ import annotations

import pytest
import torch

from mmcompress.compress import students


def _tiny_clip(seed=0):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    common = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128)
    cfg = CLIPConfig(text_config=dict(vocab_size=50, max_position_embeddings=8, **common),
                     vision_config=dict(image_size=32, patch_size=8, **common), projection_dim=32)
    return CLIPModel(cfg).eval()


def _embed(model, x, ids):
    from mmcompress.models.clip import embedding

    with torch.no_grad():
        return (embedding(model.get_image_features(pixel_values=x)),
                embedding(model.get_text_features(input_ids=ids, attention_mask=torch.ones_like(ids))))


def test_kept_layers_are_evenly_spaced_and_end_with_the_last():
    assert students.kept_layers(12, 6) == [1, 3, 5, 7, 9, 11]
    assert students.kept_layers(4, 2) == [1, 3] and students.kept_layers(4, 4) == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        students.kept_layers(4, 5)


def test_a_student_keeping_everything_is_the_teacher():
    teacher = _tiny_clip()
    student = students.shrink(teacher, {"image": {"layers": 4, "width": 1.0}})
    x, ids = torch.randn(3, 3, 32, 32), torch.randint(0, 50, (3, 8))
    for a, b in zip(_embed(teacher, x, ids), _embed(student, x, ids)):
        assert torch.equal(a, b)


def test_half_layers_three_quarter_width_student(tmp_path):
    from transformers import CLIPModel

    teacher = _tiny_clip()
    student = students.shrink(teacher, {"image": {"layers": 2, "width": 0.75}})
    v = student.config.vision_config
    assert (v.num_hidden_layers, v.hidden_size, v.num_attention_heads, v.intermediate_size) == (2, 48, 3, 96)
    assert student.config.text_config.hidden_size == 64  # the other tower is the teacher's
    # layer 0 of the student starts from teacher layer 1: leading 48 rows/columns (3 heads of 16)
    t_q = teacher.vision_model.encoder.layers[1].self_attn.q_proj.weight
    assert torch.equal(student.vision_model.encoder.layers[0].self_attn.q_proj.weight, t_q[:48, :48])
    x, ids = torch.randn(2, 3, 32, 32), torch.randint(0, 50, (2, 8))
    (ti, tt), (si, st) = _embed(teacher, x, ids), _embed(student, x, ids)
    assert si.shape == ti.shape and torch.equal(st, tt)  # same embedding size; text tower unchanged
    n_t = sum(p.numel() for p in teacher.vision_model.parameters())
    n_s = sum(p.numel() for p in student.vision_model.parameters())
    assert n_s < 0.4 * n_t
    student.save_pretrained(tmp_path)  # loadable without mmcompress
    again = CLIPModel.from_pretrained(tmp_path).eval()
    assert torch.equal(_embed(again, x, ids)[0], si)


def test_widths_that_are_not_whole_heads_are_refused():
    with pytest.raises(ValueError, match="whole number of heads"):
        students.shrink(_tiny_clip(), {"text": {"width": 0.6}})


def test_the_zoo_teacher_with_its_conv_stem_shrinks_too():
    from mmcompress.models import shapes_clip, zoo

    teacher, _, _ = shapes_clip.load(zoo.build("shapes-clip-tiny"))
    student = students.shrink(teacher, {"image": {"layers": 1, "width": 0.5}}, build=shapes_clip.from_config)
    stem = student.vision_model.embeddings.patch_embedding
    assert isinstance(stem, shapes_clip.ConvStem) and stem.net[-1].out_channels == 32  # hidden 64 -> 32
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        from mmcompress.models.clip import embedding

        out = embedding(student.get_image_features(pixel_values=x))
    assert out.shape == (2, teacher.config.projection_dim) and torch.isfinite(out).all()


def test_both_towers_at_once_and_only_their_parameters_are_owned():
    teacher = _tiny_clip()
    student = students.shrink(teacher, {"image": {"layers": 2}, "text": {"layers": 1, "width": 0.5}})
    assert student.config.vision_config.num_hidden_layers == 2 and student.config.text_config.hidden_size == 32
    # the student's text layer 0 starts from the teacher's last layer (4 -> 1 keeps layer 3), cut to 32 channels
    got = student.text_model.encoder.layers[0].mlp.fc1.weight
    assert torch.equal(got, teacher.text_model.encoder.layers[3].mlp.fc1.weight[:64, :32])
    assert students.owns(student.config, "image", "visual_projection.weight")
    assert not students.owns(student.config, "image", "text_model.embeddings.token_embedding.weight")
    assert not students.owns(student.config, "text", "logit_scale")


def test_a_bert_text_encoder_drops_layers_and_refuses_a_narrower_width(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    teacher = BertModel(BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=6, num_attention_heads=4,
                                   intermediate_size=64, max_position_embeddings=16)).eval()
    assert students.layers_prefix(teacher, "text") == "encoder.layer"
    student = students.shrink(teacher, {"text": {"layers": 3}})
    assert isinstance(student, BertModel) and student.config.num_hidden_layers == 3
    assert torch.equal(student.encoder.layer[2].output.dense.weight, teacher.encoder.layer[5].output.dense.weight)
    with pytest.raises(ValueError, match="no projection"):
        students.check(teacher.config, "text", None, 0.5)
    with pytest.raises(ValueError, match="has 6 layers"):
        students.check(teacher.config, "text", 7, 1.0)
    student.save_pretrained(tmp_path)
    assert BertModel.from_pretrained(tmp_path).config.num_hidden_layers == 3


def test_a_tower_from_scratch_keeps_its_fresh_weights_and_the_other_tower_stays_the_teachers():
    teacher = _tiny_clip()
    torch.manual_seed(1)
    student = students.shrink(teacher, {"image": {"layers": 2, "init": "scratch"}})
    got = student.vision_model.encoder.layers[1].mlp.fc1.weight
    assert not torch.equal(got, teacher.vision_model.encoder.layers[3].mlp.fc1.weight)
    assert torch.equal(student.text_model.encoder.layers[0].mlp.fc1.weight, teacher.text_model.encoder.layers[0].mlp.fc1.weight)
    assert torch.equal(student.logit_scale, teacher.logit_scale)


def test_a_siglip_image_tower_is_refused_a_narrower_width_before_any_work():
    from transformers import SiglipConfig

    cfg = SiglipConfig(text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2),
                       vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2))
    with pytest.raises(ValueError, match="packed"):
        students.check(cfg, "image", None, 0.5)
    students.check(cfg, "image", 1, 1.0)  # fewer layers are fine
    students.check(cfg, "text", None, 0.5)  # its text tower has no such head
