"""Data sets for the study layer (harness/study.py), all offline: nothing is ever downloaded.

`--data` names one:
- `digits`: scikit-learn's load_digits (ships with the package): 1,797 8x8 images, 10 classes.
- `mnist1d`: the `mnist1d` package generates it locally (make_dataset; never get_dataset, which
  downloads): 5,000 sequences of 40 features, 10 classes.
- `cifar10:PATH`: a local folder of the standard python-pickle batches (data_batch_1..5,
  test_batch: dicts with b"data" (N, 3072) uint8 in CHW order and b"labels").

Every set is pooled and split once: a stratified split with a fixed seed (SPLIT_SEED; 20% for
validation), then standardized with statistics of the training split only (per feature for
vectors, per channel for images; a constant feature is left centred, not divided by 0). Arrays
are float32 in the canonical layout of backends/base.py: (N, features) or (N, H, W, C), labels
int64. Whether a set is read as vectors or images follows the model's input_shape.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.errors import HarnessInputError

SPLIT_SEED = 20_240_501
VALIDATION_FRACTION = 0.2
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
DATA_NAMES = ("digits", "mnist1d", "cifar10:PATH")


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_val.max())) + 1


def data_kind(text: str, where: str = "--data") -> tuple[str, str]:
    """(kind, path) of a --data value; HarnessInputError for one that names no data set."""
    kind, _, path = text.partition(":")
    if (kind in ("digits", "mnist1d") and not path) or (kind == "cifar10" and path):
        return kind, path
    raise HarnessInputError(f"{where}: {text!r} is not a data set (use one of {', '.join(DATA_NAMES)})")


def load_dataset(text: str, images: bool, where: str = "--data") -> Dataset:
    """The data set `text` names (see DATA_NAMES), as images (N, H, W, C) or vectors (N, F)."""
    kind, path = data_kind(text, where)
    x, y = _digits() if kind == "digits" else _mnist1d() if kind == "mnist1d" else read_cifar10(Path(path), where)
    if images and x.ndim == 2:  # a set of sequences has no image form
        raise HarnessInputError(f"{where}: {kind} holds vectors of {x.shape[1]} features; use a model whose "
                                f"input_shape is ({x.shape[1]},)")
    if not images:
        x = x.reshape(len(x), -1)
    return split_and_standardize(kind, x, y)


def split_and_standardize(name: str, x: np.ndarray, y: np.ndarray) -> Dataset:
    """A seeded stratified split (VALIDATION_FRACTION of each class to validation), standardized
    with the training split's mean and standard deviation."""
    rng = np.random.default_rng(SPLIT_SEED)
    val = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        val[members[:round(len(members) * VALIDATION_FRACTION)]] = True
    x = x.astype(np.float32)
    axes = tuple(range(x.ndim - 1)) if x.ndim > 2 else (0,)  # per channel for images, per feature for vectors
    mean = x[~val].mean(axis=axes, keepdims=True)
    std = x[~val].std(axis=axes, keepdims=True)
    std[std == 0] = 1.0  # e.g. digits' always-blank corner pixels
    x = (x - mean) / std
    y = y.astype(np.int64)
    return Dataset(name, x[~val], y[~val], x[val], y[val])


def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise HarnessInputError("--data digits needs scikit-learn (pip install scikit-learn)") from None
    digits = load_digits()
    return digits.images.reshape(-1, 8, 8, 1), digits.target


def _mnist1d() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise HarnessInputError("--data mnist1d needs the mnist1d package (pip install mnist1d)") from None
    state = np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())  # trap: it reseeds numpy's global generator (seed 42)
    finally:
        np.random.set_state(state)
    return np.concatenate([data["x"], data["x_test"]]), np.concatenate([data["y"], data["y_test"]])


def read_cifar10(folder: Path, where: str = "--data") -> tuple[np.ndarray, np.ndarray]:
    """The CIFAR-10 python batches in `folder`, pooled: images (N, 32, 32, 3) uint8, labels."""
    if not folder.is_dir():
        raise HarnessInputError(f"{where}: cifar10:{folder}: no such folder (expected the python-pickle batches "
                                f"{', '.join(CIFAR_FILES)})")
    missing = [name for name in CIFAR_FILES if not (folder / name).is_file()]
    if missing:
        raise HarnessInputError(f"{where}: cifar10:{folder}: missing {', '.join(missing)}")
    images, labels = [], []
    for name in CIFAR_FILES:
        try:
            with open(folder / name, "rb") as handle:
                batch = pickle.load(handle, encoding="bytes")
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            label = np.asarray(batch[b"labels"], dtype=np.int64)
        except (OSError, pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
            raise HarnessInputError(f"{where}: cifar10:{folder / name}: not a CIFAR-10 python batch "
                                    f"({type(exc).__name__}: {exc})") from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(label) != len(data):
            raise HarnessInputError(f"{where}: cifar10:{folder / name}: expected data (N, 3072) and N labels, got "
                                    f"data {data.shape} and {len(label)} labels")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # stored CHW; canonical is HWC
        labels.append(label)
    return np.concatenate(images), np.concatenate(labels)
