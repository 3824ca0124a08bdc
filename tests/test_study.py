"""The study layer: data sets, weight constancy, early stopping (against Keras's own), the
variance-shift measure, the training loop (against Keras's model.fit) and `harness study`."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessInputError
from harness.model.layers import BatchNorm, Dense, Dropout
from harness.model.spec import ModelSpec, Optimizer
from harness.results.records import BNVarianceShiftRecord, StudyEpochRecord, StudyRunRecord, from_dict
from harness.study.datasets import VALIDATION_FRACTION, load_dataset, read_cifar10, split_and_standardize
from harness.study.metrics import EarlyStopping, constancy, variance_shift
from harness.study.train import StudyPlan, StudyVariant, bn_variance_shifts, initial_weights, study_spec, train_run

REPO = Path(__file__).resolve().parent.parent


# -- constancy ------------------------------------------------------------------------------------

def test_constancy_on_hand_made_snapshots_gives_exact_fractions():
    before = {"0.weight": np.array([[1.0, 2.0], [0.0, -4.0]]), "2.weight": np.array([10.0, 10.0, 10.0, 10.0, 10.0])}
    after = {"0.weight": np.array([[1.0, 2.001], [0.0, -4.5]]),  # unchanged, +0.05%, unchanged (at 0), -12.5%
             "2.weight": np.array([10.0, 10.005, 10.05, 10.5, 12.0])}  # 0, 0.05%, 0.5%, 5%, 20%
    found = constancy(before, after)
    assert found["0.weight"] == {"0": 0.5, "0.001": 0.75, "0.01": 0.75, "0.1": 0.75}
    assert found["2.weight"] == {"0": 0.2, "0.001": 0.4, "0.01": 0.6, "0.1": 0.8}


def test_constancy_of_a_zero_weight_needs_it_unchanged():
    found = constancy({"0.weight": np.zeros(4)}, {"0.weight": np.array([0.0, 1e-12, 0.0, -1e-12])})
    assert found["0.weight"] == {"0": 0.5, "0.001": 0.5, "0.01": 0.5, "0.1": 0.5}


# -- early stopping, against Keras's own callback ---------------------------------------------------

class _Weights:
    """A stand-in model for Keras's callback: its weights are the epoch that set them."""

    def __init__(self):
        self.epoch, self.stop_training, self.loaded = -1, False, None

    def get_weights(self):
        return [np.array(self.epoch)]

    def set_weights(self, weights):
        self.loaded = int(weights[0])


def _keras_early_stopping(keras, losses, patience, min_delta, restore):
    model = _Weights()
    callback = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta,
                                             restore_best_weights=restore)
    callback.set_model(model)
    callback.on_train_begin()
    ran = 0
    for epoch, loss in enumerate(losses):
        model.epoch, ran = epoch, epoch + 1
        callback.on_epoch_end(epoch, {"val_loss": loss})
        if model.stop_training:
            break
    callback.on_train_end()
    return ran, callback.stopped_epoch, model.loaded


def _ours(losses, patience, min_delta, restore):
    stopper, ran, state = EarlyStopping(patience, min_delta, restore), 0, {"epoch": -1}
    for epoch, loss in enumerate(losses):
        state["epoch"], ran = epoch, epoch + 1
        if stopper.update(epoch, loss, lambda: state["epoch"]):
            break
    return ran, stopper.stopped_epoch, stopper.best_weights if stopper.restored_epoch is not None else None


SEQUENCES = [
    [1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.7, 0.6],  # a dip, then worse for three epochs
    [1.0, 1.1, 1.2, 1.3, 1.4],  # never improves after the first epoch
    [1.0, 0.9995, 0.999, 0.9985, 0.998, 0.9975],  # improves by less than a min_delta of 1e-3
    [1.0, 0.8, 0.6, 0.4],  # keeps improving: no stop
    [0.5, 0.5, 0.5, 0.4, 0.5, 0.5],  # ties are not improvements
]


@pytest.mark.parametrize("losses", SEQUENCES)
@pytest.mark.parametrize("patience, min_delta, restore", [(0, 0.0, True), (2, 0.0, True), (2, 1e-3, True),
                                                           (1, 0.0, False), (3, 1e-3, False)])
def test_early_stopping_stops_and_restores_where_keras_does(backend_factory, losses, patience, min_delta, restore):
    keras = backend_factory("tensorflow").keras  # through the backend: TensorFlow configured once, after torch
    assert _ours(losses, patience, min_delta, restore) == _keras_early_stopping(keras, losses, patience, min_delta,
                                                                                restore)


def test_early_stopping_example_epochs():
    stopper = EarlyStopping(patience=2, restore_best_weights=True)
    stops = [stopper.update(epoch, loss, lambda e=epoch: e) for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.95])]
    assert stops == [False, False, False, True]  # the fourth epoch (index 3) is the second without improvement
    assert (stopper.stopped_epoch, stopper.restored_epoch, stopper.best_weights) == (3, 1, 1)


# -- variance shift ---------------------------------------------------------------------------------

def test_variance_shift_is_running_over_evaluation_variance_per_channel():
    inputs = np.random.default_rng(0).normal(0.0, [1.0, 2.0, 0.5], size=(20_000, 3))
    ratios = variance_shift(np.array([2.0, 4.0, 0.25]), inputs)
    np.testing.assert_allclose(ratios, [2.0, 1.0, 1.0], rtol=0.03)


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5])
def test_variance_shift_of_dropout_before_batchnorm_is_one_over_one_minus_p(backend, rate):
    """Zero-mean inputs through Dropout(rate) into BatchNorm, trained on batches: BN's running
    variance is the training-time variance, 1/(1-rate) times the evaluation-time one."""
    spec = ModelSpec("shift", (64,), 4, (Dropout(rate), BatchNorm(momentum=0.9), Dense(4)), Optimizer("sgd", lr=0.01),
                     batch_size=256)
    model = backend.build(spec)
    rng = np.random.default_rng(1)
    for _ in range(200):
        model.forward(rng.standard_normal((256, 64)).astype(np.float32), training=True)
    data = split_and_standardize("synthetic", rng.standard_normal((5000, 64)), np.arange(5000) % 4)
    where = dict(backend=backend.name, data="synthetic", model="shift", variant="v", seed=0)
    (record,) = bn_variance_shifts(backend, model, spec, data, where)
    assert record.shift == pytest.approx(1.0 / (1.0 - rate), rel=0.04)
    assert record.dropout_rate == rate and record.layer == 1 and len(record.shift_per_channel) == 64


# -- data sets -----------------------------------------------------------------------------------

def test_split_is_stratified_seeded_and_standardized_on_the_training_split():
    x = np.random.default_rng(2).normal(5.0, 3.0, size=(1000, 4))
    y = np.repeat(np.arange(4), 250)
    data = split_and_standardize("s", x, y)
    assert len(data.y_val) == 200 and np.bincount(data.y_val).tolist() == [50, 50, 50, 50]
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1.0, atol=1e-4)
    assert not np.allclose(data.x_val.mean(axis=0), 0.0, atol=1e-3)  # the validation split is not refitted
    again = split_and_standardize("s", x, y)
    np.testing.assert_array_equal(again.x_val, data.x_val)


def test_digits_as_vectors_and_as_images():
    pytest.importorskip("sklearn")
    vectors, images = load_dataset("digits", images=False), load_dataset("digits", images=True)
    assert vectors.x_train.shape[1:] == (64,) and images.x_train.shape[1:] == (8, 8, 1)
    assert len(vectors.y_train) + len(vectors.y_val) == 1797 and vectors.num_classes == 10
    assert len(vectors.y_val) == pytest.approx(1797 * VALIDATION_FRACTION, abs=10)
    assert vectors.x_train.dtype == np.float32 and vectors.y_train.dtype == np.int64


def test_mnist1d_is_generated_locally_and_leaves_numpy_seeded_as_it_was():
    pytest.importorskip("mnist1d")
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    data = load_dataset("mnist1d", images=False)
    assert np.random.random() == expected  # make_dataset reseeds numpy's global generator; we restore it
    assert data.input_shape == (40,) and len(data.y_train) == 4000 and len(data.y_val) == 1000
    with pytest.raises(HarnessInputError, match="holds vectors of 40 features"):
        load_dataset("mnist1d", images=True)


def _cifar_folder(folder: Path, images_per_batch: int = 2) -> np.ndarray:
    folder.mkdir()
    rng = np.random.default_rng(3)
    stored = []
    for index, name in enumerate([*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]):
        data = rng.integers(0, 256, size=(images_per_batch, 3072), dtype=np.uint8)
        stored.append(data)
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": [index % 10] * images_per_batch}, handle)
    return np.concatenate(stored)


def test_cifar10_reads_the_standard_python_batches(tmp_path):
    stored = _cifar_folder(tmp_path / "cifar")
    images, labels = read_cifar10(tmp_path / "cifar")
    assert images.shape == (12, 32, 32, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # Stored as 1024 red, then green, then blue values, row-major: pixel (row 1, col 2) of image 0.
    assert images[0, 1, 2].tolist() == [stored[0, 34], stored[0, 1024 + 34], stored[0, 2048 + 34]]


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "test_batch").unlink(), "missing test_batch"),
    (lambda folder: (folder / "data_batch_3").write_bytes(b"not a pickle"),
     "data_batch_3: not a CIFAR-10 python batch"),
    (lambda folder: (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((2, 10))})),
     "data_batch_2: not a CIFAR-10 python batch"),
])
def test_cifar10_refuses_a_damaged_folder_naming_the_file(tmp_path, damage, message):
    _cifar_folder(tmp_path / "cifar")
    damage(tmp_path / "cifar")
    with pytest.raises(HarnessInputError, match=message):
        read_cifar10(tmp_path / "cifar")
    with pytest.raises(HarnessInputError, match="no such folder"):
        read_cifar10(tmp_path / "nowhere")


# -- training --------------------------------------------------------------------------------------

def test_study_variant_parses_the_early_stopping_token():
    variant = StudyVariant.parse("early_stopping, dropout=absent")
    assert variant == StudyVariant("dropout=absent", True) and variant.label == "dropout=absent,early_stopping"
    assert StudyVariant.parse("bn=after,dropout=0").label == "bn=after,dropout=0"
    with pytest.raises(HarnessInputError, match="wobble"):
        StudyVariant.parse("wobble=1")


def test_initial_weights_are_the_same_in_both_frameworks(backend_factory):
    torch_backend, tf_backend = backend_factory("torch"), backend_factory("tensorflow")
    spec = study_spec("cnn", (8, 8, 1), 10)
    x = np.random.default_rng(4).normal(size=(16, 8, 8, 1)).astype(np.float32)
    outputs = []
    for backend in (torch_backend, tf_backend):
        model = backend.build(spec)
        model.set_weights(initial_weights(spec, {k: v.shape for k, v in model.get_weights().items()}, seed=3))
        outputs.append(model.forward(x, training=False))
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-5)


def test_the_harness_loop_agrees_with_keras_fit(backend_factory):
    """Keras users train with model.fit: on the same batches, from the same weights, the
    harness's loop (Model.train_epoch) must end with the same weights."""
    backend = backend_factory("tensorflow")
    keras = backend.keras
    spec = study_spec("mlp", (64,), 10)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(160, 64)).astype(np.float32), rng.integers(0, 10, size=160)
    ours = backend.build(spec)
    start = initial_weights(spec, {k: v.shape for k, v in ours.get_weights().items()}, seed=1)
    ours.set_weights(start)
    ours.train_epoch(x, y, seed=9)

    theirs = backend.build(spec)
    theirs.set_weights(start)
    net = theirs.net
    adam = spec.optimizer  # Keras's default epsilon is 1e-7; the backend builds the spec's
    net.compile(optimizer=keras.optimizers.Adam(learning_rate=adam.lr, beta_1=adam.beta_1, beta_2=adam.beta_2,
                                                epsilon=adam.epsilon),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    order = np.random.default_rng(9).permutation(len(x))  # the order train_epoch draws from its seed
    net.fit(x[order], y[order], batch_size=spec.batch_size, epochs=1, shuffle=False, verbose=0)
    for key, value in theirs.get_weights().items():
        np.testing.assert_allclose(ours.get_weights()[key], value, rtol=1e-5, atol=1e-6, err_msg=key)


def test_train_run_records_every_epoch_and_how_it_ended(backend_factory):
    pytest.importorskip("sklearn")
    backend = backend_factory("torch")
    data = load_dataset("digits", images=False)
    plan = StudyPlan(epochs=3, seeds=(0,), patience=0)
    records = train_run(backend, data, "mlp", StudyVariant.parse("bn=after,dropout=0.5,early_stopping"), 0, plan)
    epochs = [r for r in records if isinstance(r, StudyEpochRecord)]
    shifts = [r for r in records if isinstance(r, BNVarianceShiftRecord)]
    (run,) = [r for r in records if isinstance(r, StudyRunRecord)]
    assert [e.epoch for e in epochs] == list(range(run.epochs_run)) and 1 <= run.epochs_run <= 3
    # dense, dropout, BN, dense, dropout, BN, dense
    assert set(epochs[0].constancy) == {"0.weight", "3.weight", "6.weight"}
    assert [s.layer for s in shifts] == [2, 5] and all(s.dropout_rate == 0.5 for s in shifts)
    assert run.early_stopping and run.restored_epoch is not None
    best = min(epochs, key=lambda e: e.val_loss)
    assert run.restored_epoch == best.epoch and run.val_loss == pytest.approx(best.val_loss, rel=1e-5)
    assert all(from_dict(r.as_dict()) == r for r in records)


@pytest.mark.slow
def test_study_command_writes_a_run_folder_with_a_report(tmp_path):
    pytest.importorskip("sklearn")
    out = tmp_path / "study"
    command = [sys.executable, "-m", "harness", "study", "--data", "digits", "--seeds", "2", "--epochs", "2",
               "--backends", "torch", "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    cases = [line for line in lines if line["kind"] == "case"]
    assert len(cases) == 2 and all(c["status"] == "ok" for c in cases)  # one per seed, every variant inside
    epochs = [line for line in lines if line["kind"] == "study_epoch"]
    assert len(epochs) == 8 * 2 * 2 and {e["seed"] for e in epochs} == {0, 1}
    assert {e["variant"] for e in epochs} >= {"dropout=absent", "bn=after,dropout=0", "bn=after,dropout=0.5"}
    shifts = [line for line in lines if line["kind"] == "bn_variance_shift"]
    assert {s["dropout_rate"] for s in shifts} == {0.0, 0.5}
    assert (out / "report.md").is_file()
    again = subprocess.run(command + ["--resume"], cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=900)
    assert again.returncode == 0 and "2 already ok" in again.stdout, again.stdout + again.stderr


# -- augmentation, sparsity and the suites' targets (issue #25) -----------------------------------

def _shifted_copies(sample: np.ndarray, reach: int) -> list[np.ndarray]:
    """Every shift of an (H, W, C) sample by up to `reach` per axis, nearest-edge filled."""
    padded = np.pad(sample, ((reach, reach), (reach, reach), (0, 0)), mode="edge")
    h, w = sample.shape[:2]
    return [padded[dy:dy + h, dx:dx + w] for dy in range(2 * reach + 1) for dx in range(2 * reach + 1)]


def test_augment_shifts_each_image_by_at_most_one_eighth_with_nearest_fill(monkeypatch):
    from harness.study import augment as module

    monkeypatch.setattr(module, "NOISE_STD", 0.0)
    images = np.random.default_rng(0).normal(size=(40, 8, 8, 1)).astype(np.float32)
    out = module.augment(images.reshape(40, 64), (8, 8, 1), False, np.random.default_rng(1)).reshape(images.shape)
    matches = [[np.array_equal(o, c) for c in _shifted_copies(x, 1)] for x, o in zip(images, out)]
    assert all(any(m) for m in matches)  # every output is one of the 9 shifts of its own input
    assert sum(m.index(True) != 4 for m in matches) > 20  # index 4: no shift; most samples moved


def test_augment_flips_only_where_asked_and_adds_noise_of_its_deviation(monkeypatch):
    from harness.study import augment as module

    x = np.zeros((2000, 40), dtype=np.float32)
    noisy = module.augment(x, (40,), False, np.random.default_rng(2))
    assert noisy.dtype == np.float32 and noisy.shape == x.shape
    assert abs(float(noisy.std()) - module.NOISE_STD) < 0.005 and abs(float(noisy.mean())) < 0.005
    monkeypatch.setattr(module, "NOISE_STD", 0.0)
    image = np.random.default_rng(3).normal(size=(1, 8, 8, 3)).astype(np.float32).repeat(200, axis=0)
    for flips in (False, True):
        out = module.augment(image, (8, 8, 3), flips, np.random.default_rng(4))
        mirrored = [any(np.array_equal(o, c[:, ::-1]) for c in _shifted_copies(image[0], 1)) for o in out]
        assert (0.35 < np.mean(mirrored) < 0.65) if flips else not any(mirrored)
    again = module.augment(image, (8, 8, 3), True, np.random.default_rng(4))
    np.testing.assert_array_equal(again, out)  # the generator alone decides: every framework sees the same


class _RecordingModel:
    """A stand-in model that records what each train_epoch and evaluate call was given."""

    def __init__(self, kernel_shape):
        self.weights = {"0.weight": np.zeros(kernel_shape, np.float32)}
        self.fitted, self.evaluated = [], []

    def get_weights(self):
        return dict(self.weights)

    def set_weights(self, weights):
        self.weights = {k: np.array(v) for k, v in weights.items() if k in self.weights}

    def train_epoch(self, x, y, seed):
        self.fitted.append(x.copy())
        return 0.5

    def evaluate(self, x, y):
        from types import SimpleNamespace

        self.evaluated.append(x)
        return SimpleNamespace(loss=0.5, accuracy=0.5)


def test_the_augment_variant_trains_on_fresh_copies_and_evaluates_on_clean_data():
    data = split_and_standardize("digits", np.random.default_rng(0).normal(size=(50, 64)), np.arange(50) % 10)
    data = replace(data, sample_shape=(8, 8, 1))
    made = []

    class Backend:
        name = "fake"

        def build(self, spec, mode):
            made.append(_RecordingModel((10, 64)))
            return made[-1]

    variant = StudyVariant.parse("augment,dropout=absent")
    assert variant.augment and variant.label == "dropout=absent,augment"
    train_run(Backend(), data, "mlp", variant, 3, StudyPlan(epochs=2, seeds=(3,)))
    train_run(Backend(), data, "mlp", StudyVariant.parse("dropout=absent"), 3, StudyPlan(epochs=2, seeds=(3,)))
    augmented, clean = made
    first, second = augmented.fitted
    assert not np.array_equal(first, data.x_train) and not np.array_equal(first, second)  # fresh each epoch
    assert all(np.array_equal(x, data.x_train) for x in clean.fitted)
    assert all(x is data.x_train or x is data.x_val for x in augmented.evaluated + clean.evaluated)


def test_sparsity_counts_exact_and_near_zeros_per_layer():
    from harness.study.metrics import NEAR_ZERO, sparsity

    kernel = np.array([[0.0, 2.0], [NEAR_ZERO, -3 * NEAR_ZERO]])  # largest |w| 2: near means |w| <= 2e-6
    assert sparsity({"0.weight": kernel}) == {"0.weight": {"size": 4.0, "exact": 0.25, "near": 0.5}}


def test_the_default_study_trains_every_claims_variants_within_its_targets():
    from harness.study.plan import plan_study_cases
    from harness.study.suites import AUGMENT, L1, SGD_L1, STUDY_SUITES

    cases = plan_study_cases(STUDY_SUITES["default"], ("torch", "tensorflow"))
    jobs = {case.case_id.rsplit("/", 1)[0]: json.loads(case.argv[3]) for case in cases}
    assert len(cases) == 3 * 2 * 5 and set(jobs) == {f"study/{d}/{m}/{b}" for d, m in
                                                     (("digits", "mlp"), ("digits", "cnn"), ("mnist1d", "mlp"))
                                                     for b in ("torch", "tensorflow")}
    assert {AUGMENT, L1, SGD_L1} <= set(jobs["study/digits/cnn/torch"]["variants"])
    assert len(jobs["study/digits/mlp/torch"]["variants"]) == 12
    assert all(StudyVariant.parse(v).label == v for job in jobs.values() for v in job["variants"])
