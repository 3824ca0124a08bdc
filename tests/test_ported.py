"""Your own models: a torch module and its Keras port, checked layer by layer (harness/ported/).

The example pairs (examples/) must pass as a user's test suite would check them, with
`assert_parity`; the weight layouts must convert exactly; a pair that cannot be matched is
refused naming the layer.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessInputError

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow", reason="tensorflow is not installed")
keras = pytest.importorskip("keras")

import wrong_ports  # noqa: E402  (tests/wrong_ports.py)

from examples import residual_cnn, text_classifier  # noqa: E402
from harness import assert_parity  # noqa: E402
from harness.ported import mapping  # noqa: E402
from harness.ported.api import check_ported  # noqa: E402
from harness.ported.pair import ModelPair  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def example_batch(module, batch: int = 4) -> np.ndarray:
    rng = np.random.default_rng(1)
    shape = (batch, *module.INPUT_SHAPE)
    return rng.integers(0, module.INPUT_INTS, size=shape) if module.INPUT_INTS else rng.standard_normal(shape)


@pytest.mark.parametrize("module", [residual_cnn, text_classifier], ids=["residual_cnn", "text_classifier"])
def test_the_example_ports_pass_as_a_users_test_suite_checks_them(module):
    torch_model, keras_model = module.make_torch(), module.make_keras()
    before = [p.detach().clone() for p in torch_model.parameters()]

    result = assert_parity(torch_model, keras_model, example_batch(module))

    assert result.passed and len(result.records) > 20
    assert {r.check.split("[")[0] for r in result.records} >= {"forward_eval", "forward_train", "alone_eval", "loss",
                                                               "logits_eval", "grad", "sgd_3_steps"}
    assert all(torch.equal(a, b) for a, b in zip(before, torch_model.parameters())), "the user's model was changed"


def test_a_wrong_port_raises_naming_the_layer_and_the_trap():
    def wrong_keras():
        model = residual_cnn.make_keras()
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.epsilon = 1e-3  # Keras's default, not torch's 1e-5
        return model

    with pytest.raises(AssertionError) as caught:
        assert_parity(residual_cnn.make_torch(), wrong_keras(), example_batch(residual_cnn))
    message = str(caught.value)
    assert "first diverging layer: layer #2" in message, message
    assert "[bn_epsilon]" in message and "epsilon 0.001 in Keras, 1e-05 in torch" in message


def test_conv_kernels_convert_from_oihw_to_hwio_and_depthwise_to_kh_kw_c_m():
    weight = np.arange(4 * 3 * 2 * 5, dtype=np.float64).reshape(4, 3, 2, 5)  # O, I, kh, kw
    conv = keras.layers.Conv2D(4, (2, 5))
    conv.build((None, 8, 8, 3))
    pair = mapping.LayerPair(0, "conv2d", "c", None, conv)
    kernel = mapping.keras_values(pair, {"weight": weight})["kernel"]
    assert kernel.shape == (2, 5, 3, 4) and kernel[1, 4, 2, 3] == weight[3, 2, 1, 4]

    depthwise = keras.layers.DepthwiseConv2D((2, 5), depth_multiplier=2)
    depthwise.build((None, 8, 8, 3))
    weight = np.arange(6 * 1 * 2 * 5, dtype=np.float64).reshape(6, 1, 2, 5)  # C*m, 1, kh, kw; out c*m + j
    kernel = mapping.keras_values(mapping.LayerPair(0, "conv2d", "d", None, depthwise), {"weight": weight})["kernel"]
    assert kernel.shape == (2, 5, 3, 2) and kernel[1, 3, 2, 1] == weight[2 * 2 + 1, 0, 1, 3]


def test_a_dense_after_flatten_gets_its_rows_in_keras_order():
    inputs = keras.Input((2, 3, 4))  # H, W, C
    dense = keras.layers.Dense(5)
    keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    weight = np.random.default_rng(0).standard_normal((5, 4 * 2 * 3))  # torch rows run over C, H, W
    kernel = mapping.keras_values(mapping.LayerPair(0, "dense", "fc", None, dense), {"weight": weight})["kernel"]
    image = np.random.default_rng(1).standard_normal((1, 4, 2, 3))  # N, C, H, W
    torch_out = image.reshape(1, -1) @ weight.T
    keras_out = np.moveaxis(image, 1, -1).reshape(1, -1) @ kernel
    np.testing.assert_allclose(keras_out, torch_out, rtol=1e-12)


def test_a_pair_that_cannot_be_matched_is_refused_naming_the_layer():
    def make_keras():
        inputs = keras.Input((8,))
        return keras.Model(inputs, keras.layers.Dense(3, name="only")(inputs))

    def make_torch():
        return torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))

    with pytest.raises(HarnessInputError, match=r"torch layer #2 '2' \(Linear\) has no Keras counterpart"):
        check_ported(ModelPair("p", make_torch, make_keras, (8,), 3))


def test_parity_of_your_own_models_through_the_cli(tmp_path):
    done = subprocess.run([sys.executable, "-m", "harness", "parity", "--torch", "examples.text_classifier:make_torch",
                           "--keras", "examples.text_classifier:make_keras", "--input-shape", "40", "--input-ints",
                           "1000", "--classes", "10", "--json", str(tmp_path / "p.json")],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "examples.text_classifier: 25 of 25 parity checks passed (4 mapped layers)" in done.stdout
    assert (tmp_path / "p.json").exists()


TEXT = ["--torch", "examples.text_classifier:make_torch", "--keras", "examples.text_classifier:make_keras",
        "--input-ints", "1000"]


@pytest.mark.parametrize("command", ["parity", "time"])
@pytest.mark.parametrize("args, words", [
    (["--torch", "examples.residual_cnn:make_torch"], "need --keras, --input-shape, --classes too"),
    (["--torch", "nowhere.at_all:f", "--keras", "x:y", "--input-shape", "3", "--classes", "2"],
     "--torch nowhere.at_all:f: no module named 'nowhere.at_all'"),
    (["--torch", "examples.residual_cnn", "--keras", "x:y", "--input-shape", "3", "--classes", "2"],
     "expected MODULE:FUNCTION"),
    (["--torch", "examples.residual_cnn:nothing", "--keras", "examples.residual_cnn:make_keras", "--input-shape", "3",
      "--classes", "2"], "has no function 'nothing'"),
    (["--torch", "a:b", "--keras", "x:y", "--input-shape", "3,0", "--classes", "2"], "--input-shape '3,0'"),
    ([*TEXT, "--input-shape", "40", "--classes", "10", "--variant", "dropout=0"],
     "--variant apply to the harness's spec models"),
    ([*TEXT, "--input-shape", "64", "--classes", "10"],
     "--keras: the model raised ValueError on a batch of shape (8, 64) of integer ids < 1000 (--input-shape 64)"),
    ([*TEXT, "--input-shape", "40", "--classes", "4"],
     "--torch: the model returned shape (8, 10) on a batch of shape (8, 40) of integer ids < 1000; expected "
     "logits (8, 4) (--classes 4)"),
])
def test_bad_options_for_your_own_models_are_one_line(command, args, words):
    if command == "time":  # one short worker per side: what is refused is refused before any round
        args = [*args, "--rounds", "1", "--instances", "1", "--min-processes", "1", "--max-processes", "1"]
    done = subprocess.run([sys.executable, "-m", "harness", command, *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert words in done.stderr


@pytest.mark.parametrize("name", sorted(wrong_ports.PORTS))
def test_each_wrong_port_fails_at_its_layer_with_its_trap_and_each_correct_one_passes(name):
    case = wrong_ports.PORTS[name]
    result = check_ported(ModelPair(name, case.make_torch, case.make_keras, case.INPUT_SHAPE, case.CLASSES,
                                    input_ints=case.INPUT_INTS))
    if case.first_diverging is None:
        assert result.passed, result.summary()
        return
    assert not result.passed
    diagnosis = result.diagnosis
    assert diagnosis.layer is not None and diagnosis.layer.name == case.first_diverging, result.summary()
    assert case.trap in {hint.trap for hint in diagnosis.hints}, result.summary()


@pytest.mark.slow
def test_correct_ports_never_fail_over_seeds():
    """No false FAIL: every correct pair (the examples and the flatten controls) under 5 seeds,
    each seed new weights and new data."""
    cases = {"residual_cnn": residual_cnn, "text_classifier": text_classifier,
             "flatten_ok": wrong_ports.PORTS["flatten_ok"],
             "flatten_channels_first_ok": wrong_ports.PORTS["flatten_channels_first_ok"]}
    worst = []
    for name, case in cases.items():
        for seed in range(5):
            result = check_ported(ModelPair(name, case.make_torch, case.make_keras, case.INPUT_SHAPE, case.CLASSES,
                                            input_ints=case.INPUT_INTS, seed=seed))
            assert result.passed, f"seed {seed}: {result.summary()}"
            worst.append(max(r.max_rel_err / r.tol for r in result.records if not r.info))
    assert len(worst) == 20 and max(worst) <= 1.0
