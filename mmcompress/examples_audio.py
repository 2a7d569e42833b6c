"""Tiny audio teachers and audio data written to disk (part of `mmcompress examples`): a ClapModel, an ASTModel
and a Wav2Vec2Model directory from save_pretrained (safetensors) with their feature extractors, and synthesised
clips as WAV files (data/sounds.py) in a JSONL file and an audio folder. Models are randomly initialised; nothing
is downloaded."""
from __future__ import annotations

import json
from pathlib import Path

SAMPLE_RATE = 16000


def _tokenizer(max_length: int = 16):
    from mmcompress.data import sounds
    from mmcompress.models.shapes_clip import make_tokenizer

    return make_tokenizer(max_length, sounds.WORDS)


def tiny_clap(out: Path, seed: int = 0) -> Path:
    """An unfused ClapModel (HTSAT audio tower 1+1 Swin layers, RoBERTa text tower 2 layers, hidden 32) with a
    ClapFeatureExtractor at 16 kHz: 32 mel bins, a 1 s window, random crop of longer clips, repeat-padding."""
    import torch
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel

    torch.manual_seed(seed)
    tok = _tokenizer()
    cfg = ClapConfig(audio_config=dict(spec_size=64, num_mel_bins=32, window_size=4, patch_size=2, patch_stride=2,
                                       hidden_size=32, patch_embeds_hidden_size=16, projection_dim=32, depths=[1, 1],
                                       num_attention_heads=[2, 2], intermediate_size=37, enable_fusion=False),
                     text_config=dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=37, max_position_embeddings=40, pad_token_id=tok.pad_token_id,
                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, projection_dim=32),
                     projection_dim=32)
    ClapModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    ClapFeatureExtractor(feature_size=32, sampling_rate=SAMPLE_RATE, hop_length=160, max_length_s=1,
                         fft_window_size=1024, truncation="rand_trunc", padding="repeatpad").save_pretrained(out)
    return out


def tiny_ast(out: Path, seed: int = 0) -> Path:
    """An ASTModel (2 layers, hidden 32) over 100 fbank frames x 32 mel bins (a 1.015 s window at 16 kHz)."""
    import torch
    from transformers import ASTConfig, ASTFeatureExtractor, ASTModel

    torch.manual_seed(seed)
    ASTModel(ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                       patch_size=16, frequency_stride=8, time_stride=8, max_length=100,
                       num_mel_bins=32)).save_pretrained(out)
    ASTFeatureExtractor(num_mel_bins=32, max_length=100, sampling_rate=SAMPLE_RATE).save_pretrained(out)
    return out


def tiny_wav2vec2(out: Path, seed: int = 0) -> Path:
    """A Wav2Vec2Model (3 conv layers striding 80 samples, 2 transformer layers, hidden 32, stable layer norm)
    over raw 16 kHz samples of any length, with a Wav2Vec2FeatureExtractor that returns the attention mask
    (the layer-norm kind, as wav2vec2-large-lv60)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                                 conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 8, 4),
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                                 feat_extract_norm="layer", do_stable_layer_norm=True)).save_pretrained(out)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(out)
    return out


def _clips(n: int, seed: int):
    from mmcompress.data import sounds

    return sounds.generate(n, seed=seed), sounds.class_names()


def sounds_jsonl(out: Path, n: int = 48, seed: int = 0, long_every: int = 8) -> Path:
    """n clips as WAV files (every long_every-th one at 22.05 kHz and 1.6 s long, so that resampling and the
    window's cut are exercised) plus sounds.jsonl lines {audio, caption, label}."""
    import numpy as np
    import soundfile

    split, names = _clips(n, seed)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    lines = []
    for i, ((wave, rate), text, label) in enumerate(zip(split.audio, split.texts, split.labels)):
        if long_every and i % long_every == 0:  # 1.6 s at 22.05 kHz: the clip twice over, resampled by soxr
            import soxr

            wave, rate = soxr.resample(np.concatenate([wave, wave, wave])[: int(1.6 * rate)], rate, 22050), 22050
        soundfile.write(out / "clips" / f"{i:04d}.wav", wave, rate, subtype="PCM_16")
        lines.append(json.dumps({"audio": f"clips/{i:04d}.wav", "caption": text, "label": names[label]}))
    (out / "sounds.jsonl").write_text("\n".join(lines) + "\n")
    return out / "sounds.jsonl"


def audiofolder(out: Path, per_class: int = 6, seed: int = 0) -> Path:
    """root/<sound>/<clips>.flac: tones, rising chirps and noise bursts at mid pitch, per_class each."""
    import numpy as np
    import soundfile

    from mmcompress.data import sounds

    rng = np.random.default_rng(seed)
    for sound in ["tone", "rising chirp", "noise burst"]:
        folder = out / sound.replace(" ", "-")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            wave = sounds.synthesize(sound, float(rng.uniform(800, 1500)), float(rng.uniform(0.3, 0.9)),
                                     float(rng.uniform(0.1, 0.8)), rng)
            soundfile.write(folder / f"{i:03d}.flac", wave, SAMPLE_RATE)
    return out


MAKERS = {"tiny-clap": tiny_clap, "tiny-ast": tiny_ast, "tiny-wav2vec2": tiny_wav2vec2, "sounds-jsonl": sounds_jsonl,
          "sounds-folder": audiofolder}
