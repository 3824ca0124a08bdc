"""Data sets for the study layer (harness/study/train.py), all offline: nothing is ever downloaded.

`--data` names one:
- `digits`: scikit-learn's load_digits (ships with the package): 1,797 8x8 images, 10 classes.
- `mnist1d`: the `mnist1d` package generates it locally (make_dataset; never get_dataset, which
  downloads): 5,000 sequences of 40 features, 10 classes.
- `cifar10:PATH`: a local folder of the standard python-pickle batches (data_batch_1..5,
  test_batch: dicts with b"data" (N, 3072) uint8 in CHW order and b"labels"). A pickle can run
  code, so they are read by _BatchUnpickler, which builds nothing but numpy arrays, lists, dicts,
  bytes and numbers; each file is at most CIFAR_FILE_LIMIT bytes and its values are checked.

Every set is pooled and split once: a stratified split with a fixed seed (SPLIT_SEED; 20% for
validation), then standardized with statistics of the training split only (per feature for
vectors, per channel for images; a constant feature is left centred, not divided by 0). Arrays
are float32 in the canonical layout of backends/base.py: (N, features) or (N, H, W, C), labels
int64. Whether a set is read as vectors or images follows the model's input_shape.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from harness.errors import HarnessInputError
from harness.files import read_small_file

SPLIT_SEED = 20_240_501
VALIDATION_FRACTION = 0.2
CIFAR_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch")
DATA_NAMES = ("digits", "mnist1d", "cifar10:PATH")
CIFAR_FILE_LIMIT = 64 * 1024 * 1024  # bytes; a standard batch is about 31 MB
CIFAR_PIXELS = 3 * 32 * 32
CIFAR_CLASSES = 10


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    # One sample's natural shape, (H, W, C) or (L,), also when the model reads it flattened (an mlp
    # on digits): what the `augment` variant shifts (harness/study/augment.py). () means input_shape.
    sample_shape: tuple[int, ...] = ()

    @property
    def natural_shape(self) -> tuple[int, ...]:
        return self.sample_shape or self.input_shape

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
    sample_shape = tuple(x.shape[1:])
    if not images:
        x = x.reshape(len(x), -1)
    return replace(split_and_standardize(kind, x, y), sample_shape=sample_shape)


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
        data, label = _read_cifar_batch(folder / name, where)
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # stored CHW; canonical is HWC
        labels.append(label)
    return np.concatenate(images), np.concatenate(labels)


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """_codecs.encode as a pickle below protocol 3 uses it to store bytes, and nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode of {type(text).__name__} as {encoding!r}")
    return text.encode("latin1")


# What a CIFAR-10 batch's pickle may name, (module, name) -> the object it gets. An ndarray
# pickles as numpy's _reconstruct(ndarray, shape, dtype) and then its state; numpy 2 renamed
# numpy.core to numpy._core, and a batch may name either. The function is taken from ndarray's
# own reduction, so neither numpy.core (deprecated) nor numpy._core is imported by name here.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(0))[0]
_BATCH_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_bytes,
}


class _BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only _BATCH_GLOBALS: any other global (os.system, eval, a class
    whose __reduce__ would run) is refused before it is looked up, so loading a batch runs no code."""

    def __init__(self, file, source: str):
        super().__init__(file, encoding="bytes")
        self.source = source

    def find_class(self, module: str, name: str):
        found = _BATCH_GLOBALS.get((module, name))
        if found is None:
            raise HarnessInputError(f"{self.source}: refused to load {module}.{name} (a CIFAR-10 batch holds only "
                                    "numpy arrays, lists and bytes)")
        return found


def _read_cifar_batch(path: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch's data (N, 3072) uint8 and labels (N,) int64, checked value by value."""
    source = f"{where}: cifar10:{path}"
    try:
        raw = read_small_file(path, CIFAR_FILE_LIMIT)  # a regular file (not a FIFO), bounded
    except HarnessInputError as exc:  # its message starts with the path
        raise HarnessInputError(f"{where}: cifar10:{exc}") from None
    batch = _unpickle_batch(raw, source)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise HarnessInputError(f"{source}: not a CIFAR-10 python batch (expected a dict with b'data' and b'labels')")
    data, label = batch[b"data"], batch[b"labels"]
    # Only an integer array is converted: a nested list could be a tree of shared references whose
    # array would be astronomically large.
    if not isinstance(data, np.ndarray) or data.dtype.kind not in "iu" or data.ndim != 2 \
            or data.shape[1] != CIFAR_PIXELS:
        shown = f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise HarnessInputError(f"{source}: data: {shown}; expected (N, {CIFAR_PIXELS}) integers")
    if data.dtype != np.uint8:
        _refuse_outside(data, 0, 255, f"{source}: data")
    label = _labels(label, source)
    if len(label) != len(data):
        raise HarnessInputError(f"{source}: {len(label)} labels for {len(data)} images in data")
    _refuse_outside(label, 0, CIFAR_CLASSES - 1, f"{source}: labels")
    return data.astype(np.uint8), label.astype(np.int64)


def _labels(label: object, source: str) -> np.ndarray:
    """The labels as a 1-D integer array: from a list of ints (as stored) or a 1-D integer array."""
    if isinstance(label, np.ndarray):
        if label.dtype.kind not in "iu" or label.ndim != 1:
            raise HarnessInputError(f"{source}: labels: {label.dtype} array of shape {label.shape}; "
                                    "expected a list of integers")
        return label
    if not isinstance(label, list):
        raise HarnessInputError(f"{source}: labels: {type(label).__name__}; expected a list of integers")
    for index, value in enumerate(label):
        if type(value) is not int:  # bool is an int subclass, and no label
            raise HarnessInputError(f"{source}: labels[{index}]: {value!r:.40} is not an integer")
        if not 0 <= value < CIFAR_CLASSES:  # checked here: 2**40 does not fit an int64 array
            raise HarnessInputError(f"{source}: labels[{index}]: {value} is not in [0, {CIFAR_CLASSES - 1}]")
    return np.array(label, dtype=np.int64)


def _refuse_outside(values: np.ndarray, low: int, high: int, where: str) -> None:
    """HarnessInputError naming the first value of `values` outside [low, high] and its index."""
    bad = (values < low) | (values > high)
    if bad.any():
        index = np.unravel_index(int(np.argmax(bad)), values.shape)
        position = ", ".join(str(int(i)) for i in index)
        raise HarnessInputError(f"{where}[{position}]: {values[index]} is not in [{low}, {high}]")


def _unpickle_batch(raw: bytes, source: str) -> object:
    try:
        return _BatchUnpickler(io.BytesIO(raw), source).load()
    except HarnessInputError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, IndexError, KeyError, TypeError, ValueError,
            OverflowError, RecursionError, MemoryError) as exc:  # what a malformed pickle can raise
        raise HarnessInputError(f"{source}: not a CIFAR-10 python batch ({type(exc).__name__}: "
                                f"{str(exc)[:200]})") from None
