"""Frozen configuration dataclasses and the named presets (`paper`, `cpu`, `tiny`).

A preset bundles the model, data and training configs. Scripts resolve a preset, apply command-line
overrides with `dataclasses.replace`, and save `to_dict(...)` as JSON next to every result.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

CITY_MIX_NUPLAN = (
    ("las_vegas", 0.858),
    ("boston", 0.05),
    ("pittsburgh", 0.046),
    ("singapore", 0.046),
)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """GameFormer-Planner hyper-parameters. `paper` is the original's (3, 2) configuration.

    The scenario layout (21 past frames, 20 neighbour slots, 40x50 lanes, ...) is fixed by
    `gf_jax.data.schema`; these fields only size the network.
    """

    dim: int = 256
    heads: int = 8
    ffn_dim: int = 1024
    encoder_layers: int = 3
    decoder_levels: int = 2
    modalities: int = 6
    neighbors: int = 10
    dropout: float = 0.1
    lstm_layers: int = 2
    future_steps: int = 80
    segment_points: int = 10

    def validate(self) -> ModelConfig:
        if self.dim % self.heads:
            raise ValueError(f"ModelConfig: dim {self.dim} is not divisible by heads {self.heads}")
        if not 1 <= self.neighbors <= 20:
            raise ValueError(f"ModelConfig: neighbors must be in [1, 20], got {self.neighbors}")
        if self.encoder_layers < 1 or self.decoder_levels < 0 or self.modalities < 1:
            raise ValueError(f"ModelConfig: invalid layer/level/mode counts in {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ModelConfig: dropout must be in [0, 1), got {self.dropout}")
        return self


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which scenarios to train, validate and test on.

    `source` is `synthetic` (the embedded procedural world) or a path understood by the data
    loaders (a folder of GameFormer `.npz` files, ...). Split sizes apply to the synthetic world.
    `noise_fraction` corrupts that fraction of training ego futures (val/test stay clean).
    """

    source: str = "synthetic"
    n_train: int = 5148
    n_val: int = 1000
    n_test: int = 1000
    noise_fraction: float = 0.05
    city_mix: tuple[tuple[str, float], ...] = CITY_MIX_NUPLAN
    data_seed: int = 0

    def validate(self) -> DataConfig:
        if min(self.n_train, self.n_val, self.n_test) < 1:
            raise ValueError(f"DataConfig: split sizes must be positive, got {self}")
        if not 0.0 <= self.noise_fraction <= 1.0:
            raise ValueError(
                f"DataConfig: noise_fraction must be in [0, 1], got {self.noise_fraction}"
            )
        if any(w < 0 for _, w in self.city_mix) or sum(w for _, w in self.city_mix) <= 0:
            raise ValueError(
                f"DataConfig: city_mix weights must be >= 0 and not all 0: {self.city_mix}"
            )
        return self


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The original training recipe (train_predictor.py): AdamW 1e-4, clip 5, x0.5 at 10..18."""

    epochs: int = 20
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    clip_norm: float = 5.0
    lr_milestones: tuple[int, ...] = (10, 12, 14, 16, 18)
    lr_gamma: float = 0.5
    eval_batch_size: int = 64
    seed: int = 0

    def validate(self) -> TrainConfig:
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError(f"TrainConfig: epochs, batch_size, grad_accum must be >= 1: {self}")
        if self.batch_size % self.grad_accum:
            raise ValueError(
                f"TrainConfig: batch_size {self.batch_size} not divisible by grad_accum {self.grad_accum}"
            )
        return self

    def lr_at_epoch(self, epoch: int) -> float:
        """Learning rate used during 0-based `epoch` (PyTorch MultiStepLR stepped once per epoch)."""
        return self.learning_rate * self.lr_gamma ** sum(epoch >= m for m in self.lr_milestones)


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig

    def validate(self) -> Preset:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        return self


def _scaled_milestones(epochs: int) -> tuple[int, ...]:
    """The original's milestones (10..18 of 20) scaled to another epoch count."""
    return tuple(sorted({max(1, round(m * epochs / 20)) for m in (10, 12, 14, 16, 18)}))


PRESETS: dict[str, Preset] = {
    "paper": Preset("paper", ModelConfig(), DataConfig(), TrainConfig()),
    "cpu": Preset(
        "cpu",
        ModelConfig(dim=64, heads=4, ffn_dim=256, encoder_layers=2, decoder_levels=1),
        DataConfig(n_train=512, n_val=128, n_test=200),
        # 32 steps per epoch instead of the paper's 161: a smaller batch and a 3x learning rate
        # let the scaled-down run learn within 20 epochs (measured on 2 cores: ~6-7 min per run;
        # fewer steps, e.g. 12 epochs, left the plan worse than constant velocity).
        TrainConfig(epochs=20, batch_size=16, learning_rate=3e-4),
    ),
    "tiny": Preset(
        "tiny",
        ModelConfig(dim=32, heads=2, ffn_dim=64, encoder_layers=1, decoder_levels=1, modalities=3),
        DataConfig(n_train=64, n_val=16, n_test=16),
        TrainConfig(
            epochs=4, batch_size=16, lr_milestones=_scaled_milestones(4), learning_rate=5e-4
        ),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def to_dict(obj: Any) -> Any:
    """A JSON-ready dict of a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(x) for x in obj]
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(to_dict(obj), indent=2, sort_keys=True)
