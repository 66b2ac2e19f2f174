"""Classification figures that stay honest on unbalanced classes."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (true class, predicted class)."""
    flat = truth.astype(np.int64) * num_classes + predicted.astype(np.int64)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_recall(confusion: np.ndarray) -> np.ndarray:
    """Recall per true class; NaN for a class with no examples."""
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(confusion) / support


def macro_accuracy(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Mean per-class recall over the classes present: comparable to a balanced test set."""
    recall = per_class_recall(confusion_matrix(truth, predicted, num_classes))
    return float(np.nanmean(recall))
