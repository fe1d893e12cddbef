"""Per-image scores and what they sum to: containers that tables, statistics and the held-out
gains read without the model code.

:class:`ImageScores` holds one model's top-1 correctness and cross-entropy of every image of a
set, :class:`ScoredPath` those of every point of a path, as ``.npz`` files on disk. They live
apart from :mod:`interpsharp.evaluate` (which computes them) so that jobs that only read scores,
such as the held-out gains, need numpy alone and do not pay torch's and open_clip's seconds of
import.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: Columns of a path table (:func:`~interpsharp.evaluate.path_table`), in order. ``split`` is
#: ``all`` for the whole set, else the name of a part (``selection``, ``heldout``).
PATH_COLUMNS = ("model", "dataset", "split", "alpha", "metric", "value", "n")


@dataclass(frozen=True)
class EvalResult:
    """Top-1 accuracy in [0, 1], mean cross-entropy (nats) and the number of images."""

    accuracy: float
    loss: float
    n: int


@dataclass(frozen=True)
class ImageScores:
    """Per-image top-1 correctness (bool) and cross-entropy (float32) of one model on one set,
    in the order the images were scored."""

    correct: np.ndarray
    loss: np.ndarray

    def summary(self, indices: np.ndarray | None = None) -> EvalResult:
        """Accuracy and mean loss over all images, or over ``indices`` into them. The loss is
        summed in float64 in image order, so every caller gets the same bits."""
        return _summarize(self.correct, self.loss, indices)


def _summarize(correct: np.ndarray, loss: np.ndarray, indices: np.ndarray | None) -> EvalResult:
    if indices is not None:
        correct, loss = correct[indices], loss[indices]
    n = len(correct)
    if n == 0:
        raise ValueError("cannot summarise the scores of zero images")
    return EvalResult(accuracy=int(correct.sum()) / n, loss=float(loss.sum(dtype=np.float64)) / n, n=n)


@dataclass(frozen=True)
class ScoredPath:
    """Per-image scores of one path on one set: row ``i`` of ``correct`` (bool) and ``loss``
    (float32), both ``(len(alphas), n_images)``, is ``theta(alphas[i])``."""

    alphas: np.ndarray
    correct: np.ndarray
    loss: np.ndarray

    def __post_init__(self) -> None:
        if self.correct.shape != self.loss.shape or self.correct.shape[0] != len(self.alphas):
            raise ValueError(f"scored path: {len(self.alphas)} alphas but correct {self.correct.shape}, loss {self.loss.shape}")

    def at(self, i: int) -> ImageScores:
        return ImageScores(self.correct[i], self.loss[i])

    def take(self, rows: Sequence[int]) -> "ScoredPath":
        """The points at ``rows`` (indices into ``alphas``), e.g. one alpha per file."""
        rows = list(rows)
        return ScoredPath(self.alphas[rows], self.correct[rows], self.loss[rows])

    def save(self, path: str | os.PathLike, **meta: object) -> Path:
        """Write as ``.npz`` (``alphas``, ``correct``, ``loss`` and ``meta`` values), atomically."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
        os.close(fd)
        try:
            np.savez(tmp, alphas=self.alphas, correct=self.correct, loss=self.loss,
                     **{k: np.asarray(v) for k, v in meta.items()})
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ScoredPath":
        """Read a file :meth:`save` wrote; a missing or foreign file is an error naming it."""
        path = Path(path)
        try:
            with np.load(path) as data:
                return cls(np.asarray(data["alphas"], dtype=float), data["correct"].astype(bool), data["loss"])
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(f"{path}: not a per-image score file written by interpsharp ({err}); regenerate it") from err

    @classmethod
    def stack(cls, parts: Sequence["ScoredPath"]) -> "ScoredPath":
        """One path from parts covering disjoint alphas (e.g. one file per alpha), sorted by alpha."""
        alphas = np.concatenate([p.alphas for p in parts])
        order = np.argsort(alphas, kind="stable")
        return cls(alphas[order], np.concatenate([p.correct for p in parts])[order],
                   np.concatenate([p.loss for p in parts])[order])
