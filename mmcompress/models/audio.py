"""Hugging Face audio models -> towers, offline from save_pretrained directories (safetensors only, no remote code).

ClapModel (CLAP: an audio and a text tower in one space; zero-shot audio classification by prompts, audio<->text
recall), ASTModel, Wav2Vec2Model and HubertModel (one audio tower; k-NN on labels, as image towers). The audio
tower takes what the directory's own feature extractor (preprocessor_config.json) computes; that extractor runs on
the host (models/audio_preprocess.py) and is recorded in the manifests.

CLAP and AST see a fixed window (the extractor pads or cuts every clip to it): batch is the graph's only dynamic
axis. wav2vec2 (and HuBERT, its layout) takes the raw samples at any length: its graph has dynamic batch and
samples axes and an attention_mask beside input_values (1 on a clip's samples, 0 on the padding of a batch);
batches are cut to their longest clip, as text batches are to their longest row, and latency is timed at the eval
clips' lengths.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmcompress.errors import RecipeError
from mmcompress.models.bundle import TowerSpec
from mmcompress.models.clip import TEXT_SPEC, TextTower, embedding

# model_type -> the towers it gives
ANY_LENGTH = {"wav2vec2", "hubert"}  # raw samples of any length, wav2vec2's conv feature encoder + transformer
TOWERS = {"clap": ("audio", "text"), "audio-spectrogram-transformer": ("audio",),
          **dict.fromkeys(ANY_LENGTH, ("audio",))}
INPUT = {"clap": "input_features", "audio-spectrogram-transformer": "input_values",
         **dict.fromkeys(ANY_LENGTH, "input_values")}
EAGER = {"clap"}  # ClapModel refuses attn_implementation sdpa (transformers 5)
FIXED_WINDOW = {"clap", "audio-spectrogram-transformer", "sounds-clap"}  # the extractor pads or cuts to a window


def towers_of(config) -> tuple[str, ...] | None:
    return TOWERS.get(getattr(config, "model_type", None))


def refusal(config) -> str | None:
    kind = getattr(config, "model_type", None)
    if kind not in TOWERS and (hasattr(config, "conv_dim") or kind == "whisper"):  # WavLM, Data2VecAudio, Whisper
        return (f"is a {kind} audio model, which mmcompress does not load yet; audio teachers it runs: ClapModel "
                f"(unfused), ASTModel, Wav2Vec2Model and HubertModel directories, or a python entrypoint with an "
                f"audio tower (docs/audio.md)")
    if getattr(config, "model_type", None) == "clap" and getattr(config.audio_config, "enable_fusion", False):
        return ("is a fused CLAP (audio_config.enable_fusion: true), whose audio tower takes four stacked mel views "
                "and an is_longer flag; mmcompress runs unfused CLAP models (e.g. the clap-htsat-unfused layout)")
    return None


class ClapAudioTower(nn.Module):
    """input_features (N, 1, frames, mel bins) log-mel -> (N, D) projected audio embedding."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return embedding(self.model.get_audio_features(input_features=input_features))


class PooledAudioTower(nn.Module):
    """input_values (N, frames, mel bins) fbank -> (N, D): AST's pooler output (mean of the class and
    distillation tokens), optionally L2-normalised."""

    def __init__(self, model: nn.Module, normalize: bool):
        super().__init__()
        self.model, self.normalize = model, normalize

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        e = self.model(input_values=input_values).pooler_output
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


class MeanPooledAudioTower(nn.Module):
    """input_values (N, samples) raw waveform + attention_mask (N, samples) -> (N, D): wav2vec2's last hidden
    states averaged over the frames that cover a clip's own samples (padding frames left out), optionally
    L2-normalised. The mask reaches the model itself only where its extractor returns one
    (return_attention_mask: the layer-norm models such as wav2vec2-large-lv60); the group-norm models (wav2vec2-base)
    are run on zero-padded batches without it, as their model card says."""

    def __init__(self, model: nn.Module, normalize: bool, model_takes_mask: bool):
        super().__init__()
        self.model, self.normalize, self.model_takes_mask = model, normalize, model_takes_mask

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.model(input_values=input_values,
                       attention_mask=attention_mask if self.model_takes_mask else None).last_hidden_state
        frames = self.model._get_feature_vector_attention_mask(h.shape[1], attention_mask).to(h.dtype).unsqueeze(-1)
        e = (h * frames).sum(1) / frames.sum(1).clamp(min=1.0)
        return nn.functional.normalize(e, dim=-1) if self.normalize else e


def receptive_field(kernels, strides) -> int:
    """Samples one output frame of a stack of 1-D convolutions sees: the shortest input that gives a frame."""
    field, jump = 1, 1
    for k, st in zip(kernels, strides):
        field, jump = field + (k - 1) * jump, jump * st
    return field


def feature_extractor(path: Path, where: str):
    from transformers import AutoFeatureExtractor

    from mmcompress.models.audio_preprocess import for_extractor

    if not (path / "preprocessor_config.json").is_file():
        raise RecipeError(f"{where}: {path} has no preprocessor_config.json; save the model's feature extractor "
                          f"beside it (feature_extractor.save_pretrained(DIR))")
    try:
        return for_extractor(AutoFeatureExtractor.from_pretrained(path))
    except ValueError as e:  # a feature extractor that is not one of the audio ones
        raise RecipeError(f"{where}: {path}/preprocessor_config.json: {e}") from None


def check_safetensors(model_dir: Path, where: str) -> None:
    if not any(model_dir.glob("model*.safetensors")):
        raise RecipeError(f"{where}: {model_dir} has no model.safetensors; audio teachers load from safetensors "
                          f"only (no pickled weights): save with model.save_pretrained(DIR)")


def split(model: nn.Module, config, path: Path, where: str):
    """-> (towers, specs, AudioPreprocess). A CLAP's text tower is clip.TextTower (get_text_features)."""
    audio_pre = feature_extractor(path, where)
    name = INPUT[config.model_type]
    if audio_pre.input_name != name:
        raise RecipeError(f"{where}: {path}/preprocessor_config.json holds a {type(audio_pre.extractor).__name__}, "
                          f"which computes {audio_pre.input_name}; a {config.model_type} model takes {name}")
    if config.model_type in ANY_LENGTH:  # any length: samples is a dynamic axis, with the padding's mask
        if audio_pre.window_s:
            raise RecipeError(f"{where}: {path}/preprocessor_config.json holds a "
                              f"{type(audio_pre.extractor).__name__}; a {config.model_type} model takes the raw "
                              f"samples (Wav2Vec2FeatureExtractor)")
        audio_pre.min_samples = receptive_field(config.conv_kernel, config.conv_stride)
        axes = {0: "batch", 1: "samples"}
        takes_mask = bool(getattr(audio_pre.extractor, "return_attention_mask", False))
        return {"audio": MeanPooledAudioTower(model, False, takes_mask).eval()}, \
            {"audio": TowerSpec(inputs={name: axes, "attention_mask": axes})}, audio_pre
    spec = TowerSpec(inputs={name: {0: "batch"}})  # fixed window: batch is the only dynamic axis
    if config.model_type == "clap":
        return {"audio": ClapAudioTower(model).eval(), "text": TextTower(model).eval()}, \
            {"audio": spec, "text": TEXT_SPEC}, audio_pre
    return {"audio": PooledAudioTower(model, False).eval()}, {"audio": spec}, audio_pre
