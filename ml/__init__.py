"""Character recognition models: data, network, training, evaluation and inference.

Knows nothing of HTTP, queues or databases.
"""

from ml.artifact import LoadedModel, ModelSpec, load_model
from ml.predictor import Predictor

__all__ = ["LoadedModel", "ModelSpec", "Predictor", "load_model"]
