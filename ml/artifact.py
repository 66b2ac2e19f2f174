"""The model artifact: a folder with `weights.pt` and `model.json`, validated on load.

`model.json` is the contract between training and every consumer: the label characters in class
order and the exact input the network expects (size, orientation, polarity, normalization).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from ml.model import ARCHITECTURE, CharCNN, Ensemble

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
WEIGHTS_FILE = "weights.pt"
SPEC_FILE = "model.json"


class InputSpec(BaseModel):
    """What one model input is: how preprocessing must shape an image for this network."""

    model_config = ConfigDict(frozen=True)

    height: int = 28
    width: int = 28
    orientation: str = "upright"
    ink: str = "white-on-black"
    scale: float = Field(1 / 255, description="multiply uint8 pixels by this first")
    mean: float
    std: float

    def normalize(self, pixels: ArrayLike) -> ArrayLike:
        """Pixel values 0..255 (numpy or torch) to what the network takes."""
        return (pixels * self.scale - self.mean) / self.std


class LogitCalibration(BaseModel):
    """Calibrated logits are `logits / temperature + bias`, one bias per class (`ml.calibrate`)."""

    model_config = ConfigDict(frozen=True)

    temperature: float = Field(gt=0)
    bias: list[float]

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        bias = torch.tensor(self.bias, dtype=logits.dtype, device=logits.device)
        return logits / self.temperature + bias


class ModelSpec(BaseModel):
    """Everything in model.json."""

    model_config = ConfigDict(frozen=True)

    name: str
    architecture: str
    members: int = Field(1, ge=1, description="networks averaged; more than 1: an Ensemble")
    labels: list[str]
    input: InputSpec
    training: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    pen_line_calibration: LogitCalibration | None = Field(
        None, description="applied to letters preprocessing found drawn as even pen lines"
    )
    created: str

    @property
    def num_classes(self) -> int:
        return len(self.labels)


class ModelArtifactError(ValueError):
    """A model folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class LoadedModel:
    """A validated network in eval mode together with its spec."""

    network: CharCNN | Ensemble
    spec: ModelSpec
    path: Path


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A path as given, or a shipped model's name (`emnist47`) under the repository's models/."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    shipped = MODELS_DIR / str(name_or_path)
    if shipped.is_dir():
        return shipped
    raise ModelArtifactError(f"no model folder at {candidate} or {shipped}")


def save_model(directory: Path, network: nn.Module, spec: ModelSpec) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), directory / WEIGHTS_FILE)
    write_spec(directory, spec)


def write_spec(directory: Path, spec: ModelSpec) -> None:
    (directory / SPEC_FILE).write_text(json.dumps(spec.model_dump(), indent=2) + "\n")


def read_spec(directory: Path) -> ModelSpec:
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        raise ModelArtifactError(f"{spec_path}: not found")
    try:
        spec = ModelSpec.model_validate_json(spec_path.read_text())
    except ValidationError as error:
        raise ModelArtifactError(f"{spec_path}: invalid: {error}") from error
    if spec.architecture != ARCHITECTURE:
        raise ModelArtifactError(
            f"{spec_path}: architecture {spec.architecture!r}, this code builds {ARCHITECTURE!r}"
        )
    if len(set(spec.labels)) != len(spec.labels) or not spec.labels:
        raise ModelArtifactError(f"{spec_path}: labels must be distinct and non-empty")
    pen_lines = spec.pen_line_calibration
    if pen_lines is not None and len(pen_lines.bias) != spec.num_classes:
        raise ModelArtifactError(f"{spec_path}: pen_line_calibration needs one bias per label")
    return spec


def load_model(name_or_path: str | Path) -> LoadedModel:
    """Load a model folder, checking that weights and model.json agree."""
    directory = resolve_model_dir(name_or_path)
    spec = read_spec(directory)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelArtifactError(f"{weights_path}: not found")
    network = (
        CharCNN(spec.num_classes) if spec.members == 1 else Ensemble(spec.num_classes, spec.members)
    )
    try:
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except (RuntimeError, KeyError, EOFError, OSError) as error:
        raise ModelArtifactError(f"{weights_path}: does not fit {SPEC_FILE}: {error}") from error
    network.eval()
    return LoadedModel(network, spec, directory)
