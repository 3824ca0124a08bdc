"""Variants: parsing `--variant` text (long forms, shorthands, canonical labels, located errors)
and applying it to a spec (dropout, BatchNorm placement, L1/L2 absent vs 0)."""

from __future__ import annotations

import copy

import pytest

from harness.errors import HarnessInputError
from harness.model.layers import KERNEL_LAYERS, BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D
from harness.model.spec import PRESETS, ModelSpec, Optimizer, check_spec
from harness.model.variants import SHORTHANDS, Variant, apply_variant, parse_variant

# 0 conv, 1 BN not next to a dropout, 2 pool, 3 dropout, 4 flatten, 5 dense, 6 BN right before
# a dropout (non-default momentum, so a replacement is visible), 7 dropout, 8 head.
SPEC = ModelSpec(
    name="t",
    input_shape=(8, 8, 1),
    num_classes=3,
    layers=(
        Conv2D(4, (3, 3), padding="same", activation="relu", l2=0.01),
        BatchNorm(momentum=0.95),
        MaxPool2D((2, 2)),
        Dropout(0.25),
        Flatten(),
        Dense(16, activation="relu", l1=0.001),
        BatchNorm(momentum=0.9),
        Dropout(0.5),
        Dense(3),
    ),
    optimizer=Optimizer("sgd", lr=0.1),
)
CONV, BN_CONV, POOL, DROP1, FLAT, HIDDEN, BN_DROP, DROP2, HEAD = SPEC.layers

VARIANT_TEXTS = [
    "baseline", "dropout=absent", "dropout=0", "dropout=0.3", "bn=none", "bn=before", "bn=after",
    "l1=absent", "l1=0", "l2=absent", "l2=0", "l2=0.0005", "bn=before,dropout=absent",
    "bn=after,dropout=0,l1=0.001,l2=absent", *SHORTHANDS,
]
SPECS = {"t": SPEC, **PRESETS}


def apply(spec: ModelSpec, text: str) -> ModelSpec:
    return apply_variant(spec, parse_variant(text))


def types(spec: ModelSpec) -> list[str]:
    return [layer.type for layer in spec.layers]


# ---------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize("text, expected", [
    ("baseline", Variant()),
    ("", Variant()),
    ("  baseline ", Variant()),
    ("dropout=absent", Variant.of(dropout="absent")),
    ("dropout=0", Variant.of(dropout=0.0)),
    ("dropout=0.5", Variant.of(dropout=0.5)),
    ("dropout=.5", Variant.of(dropout=0.5)),
    ("bn=none", Variant.of(bn="none")),
    ("bn=before", Variant.of(bn="before")),
    ("bn=after", Variant.of(bn="after")),
    ("l1=absent", Variant.of(l1="absent")),
    ("l1=0", Variant.of(l1=0.0)),
    ("l1=1e-3", Variant.of(l1=0.001)),
    ("l2=absent", Variant.of(l2="absent")),
    ("l2=0", Variant.of(l2=0.0)),
    ("l2=0.0001", Variant.of(l2=0.0001)),
    ("l2=2", Variant.of(l2=2.0)),
    ("dropout=0,bn=before", Variant.of(bn="before", dropout=0.0)),
    (" dropout = 0.5 , bn=after ", Variant.of(bn="after", dropout=0.5)),
    ("l2=absent,l1=0,dropout=absent,bn=none", Variant.of(bn="none", dropout="absent", l1=0.0, l2="absent")),
])
def test_long_forms(text, expected):
    assert parse_variant(text) == expected


SHORTHAND_MEANINGS = {
    "no-dropout": Variant.of(dropout="absent"),
    "dropout-absent": Variant.of(dropout="absent"),
    "dropout-p0": Variant.of(dropout=0.0),
    "dropout-p0.5": Variant.of(dropout=0.5),
    "bn-before-dropout": Variant.of(bn="before"),
    "bn-after-dropout": Variant.of(bn="after"),
    "no-bn": Variant.of(bn="none"),
    "no-l2": Variant.of(l2="absent"),
    "l2-absent": Variant.of(l2="absent"),
    "l2-0": Variant.of(l2=0.0),
    "no-l1": Variant.of(l1="absent"),
    "l1-0": Variant.of(l1=0.0),
}


def test_every_shorthand_has_a_known_meaning():
    assert set(SHORTHANDS) == set(SHORTHAND_MEANINGS)


@pytest.mark.parametrize("shorthand", sorted(SHORTHANDS))
def test_shorthand_equals_its_long_form(shorthand):
    assert parse_variant(shorthand) == parse_variant(SHORTHANDS[shorthand]) == SHORTHAND_MEANINGS[shorthand]


def test_shorthands_combine_with_long_forms():
    assert parse_variant("no-dropout, bn-before-dropout,l2=0") == Variant.of(bn="before", dropout="absent", l2=0.0)


@pytest.mark.parametrize("first, second", [
    ("l2=0,dropout=0.5,bn=before", "bn=before,dropout=0.5,l2=0"),
    ("bn=before,l2=0,dropout=0.5", "dropout=0.50, l2=0.0 ,bn-before-dropout"),
    ("l2=0.0001", "l2=1e-4"),
    ("no-dropout,no-l1", "l1=absent,dropout=absent"),
    ("baseline", ""),
])
def test_labels_are_canonical(first, second):
    a, b = parse_variant(first), parse_variant(second)
    assert a == b and a.label == b.label


def test_label_text():
    assert Variant().label == "baseline"
    assert parse_variant("l2=0,dropout=0.5,bn=before").label == "bn=before,dropout=0.5,l2=0"
    assert parse_variant("no-l2").label == "l2=absent"


@pytest.mark.parametrize("text", VARIANT_TEXTS)
def test_label_parses_back_to_the_same_variant(text):
    variant = parse_variant(text)
    assert parse_variant(variant.label) == variant


def test_distinct_variants_have_distinct_labels():
    a, b = parse_variant("l2=0.00012345678"), parse_variant("l2=0.00012345679")
    assert a != b
    assert a.label != b.label


@pytest.mark.parametrize("text, names", [
    ("foo=1", ("foo",)),
    ("dropout=0,foo=1", ("foo",)),
    ("bn=sideways", ("bn", "sideways")),
    ("bn=", ("bn",)),
    ("dropout=1", ("dropout", "1")),
    ("dropout=1.0", ("dropout", "1")),
    ("dropout=-0.1", ("dropout", "-0.1")),
    ("dropout=nan", ("dropout", "nan")),
    ("dropout=half", ("dropout", "half")),
    ("l2=-1", ("l2", "-1")),
    ("l2=abc", ("l2", "abc")),
    ("l2=", ("l2",)),
    ("l1=-0.5", ("l1", "-0.5")),
    ("dropout=0,dropout=0.5", ("dropout",)),
    ("no-dropout,dropout=0", ("dropout",)),
    ("bn=before,bn-after-dropout", ("bn",)),
    ("dropout", ("dropout",)),
    ("bn", ("bn",)),
    ("dropout=0,", ()),
    ("dropout:0", ("dropout:0",)),
    ("baseline,dropout=0", ("baseline",)),
])
def test_bad_variant_is_named(text, names):
    with pytest.raises(HarnessInputError) as info:
        parse_variant(text, source="variants.txt")
    msg = str(info.value)
    missing = [part for part in ("variants.txt", *names) if part not in msg]
    assert not missing, f"message {msg!r} does not name {missing}"


@pytest.mark.parametrize("text", ["l2=inf", "l1=1e400"])
def test_infinite_penalty_is_rejected(text):
    with pytest.raises(HarnessInputError):
        parse_variant(text)


# ---------------------------------------------------------------------------------------------
# Applying


def test_baseline_is_the_spec_itself():
    assert apply(SPEC, "baseline") == SPEC


def test_name_carries_the_label():
    assert apply(SPEC, "dropout=0,bn=after").name == "t[bn=after,dropout=0]"


def test_dropout_absent_removes_every_dropout():
    result = apply(SPEC, "dropout=absent")
    assert result.layers == (CONV, BN_CONV, POOL, FLAT, HIDDEN, BN_DROP, HEAD)
    cnn = apply(PRESETS["cnn"], "no-dropout")
    assert "dropout" not in types(cnn)
    assert list(cnn.layers) == [layer for layer in PRESETS["cnn"].layers if not isinstance(layer, Dropout)]


@pytest.mark.parametrize("text, rate", [("dropout=0", 0.0), ("dropout=0.3", 0.3)])
def test_dropout_rate_keeps_the_layers(text, rate):
    result = apply(SPEC, text)
    assert types(result) == types(SPEC)
    assert [layer.rate for layer in result.layers if isinstance(layer, Dropout)] == [rate, rate]
    others = [layer for layer in result.layers if not isinstance(layer, Dropout)]
    assert others == [layer for layer in SPEC.layers if not isinstance(layer, Dropout)]


def test_bn_before_puts_one_bn_right_before_each_dropout():
    result = apply(SPEC, "bn=before")
    assert result.layers == (CONV, BN_CONV, POOL, BatchNorm(), DROP1, FLAT, HIDDEN, BatchNorm(), DROP2, HEAD)


def test_bn_after_puts_one_bn_right_after_each_dropout():
    result = apply(SPEC, "bn=after")
    assert result.layers == (CONV, BN_CONV, POOL, DROP1, BatchNorm(), FLAT, HIDDEN, DROP2, BatchNorm(), HEAD)


def test_bn_none_removes_only_bn_next_to_dropouts():
    result = apply(SPEC, "bn=none")
    assert result.layers == (CONV, BN_CONV, POOL, DROP1, FLAT, HIDDEN, DROP2, HEAD)
    assert apply(SPEC, "bn=none").layers == apply(apply(SPEC, "bn=after"), "bn=none").layers


@pytest.mark.parametrize("placement, offset", [("before", -1), ("after", 1)])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_bn_placement_on_presets(name, placement, offset):
    spec = PRESETS[name]
    result = apply(spec, f"bn={placement}")
    drops = [i for i, layer in enumerate(result.layers) if isinstance(layer, Dropout)]
    assert drops and all(result.layers[i + offset] == BatchNorm() for i in drops)
    # Nothing else: removing the added BNs gives back the original.
    assert [layer for layer in result.layers if not isinstance(layer, BatchNorm)] == list(spec.layers)
    assert types(result).count("batchnorm") == len(drops)


@pytest.mark.parametrize("placement", ["before", "after", "none"])
@pytest.mark.parametrize("name", sorted(SPECS))
def test_bn_placement_is_idempotent(name, placement):
    once = apply(SPECS[name], f"bn={placement}")
    assert apply(once, f"bn={placement}").layers == once.layers


def test_bn_before_with_dropout_absent_leaves_bn_where_dropout_was():
    result = apply(SPEC, "bn=before,dropout=absent")
    assert result.layers == (CONV, BN_CONV, POOL, BatchNorm(), FLAT, HIDDEN, BatchNorm(), HEAD)
    cnn = PRESETS["cnn"]
    swapped = apply(cnn, "dropout=absent,bn=before")  # the order written does not matter
    assert types(swapped) == ["batchnorm" if kind == "dropout" else kind for kind in types(cnn)]


@pytest.mark.parametrize("key, other", [("l1", "l2"), ("l2", "l1")])
def test_penalty_absent_and_zero(key, other):
    absent, zero, value = apply(SPEC, f"{key}=absent"), apply(SPEC, f"{key}=0"), apply(SPEC, f"{key}=0.002")
    for result, expected in ((absent, None), (zero, 0.0), (value, 0.002)):
        kernels = [layer for layer in result.layers if isinstance(layer, KERNEL_LAYERS)]
        assert len(kernels) == 3
        assert [getattr(layer, key) for layer in kernels] == [expected] * 3
        # The other penalty is untouched.
        assert [getattr(layer, other) for layer in kernels] == [
            getattr(layer, other) for layer in SPEC.layers if isinstance(layer, KERNEL_LAYERS)
        ]
        assert [layer for layer in result.layers if not isinstance(layer, KERNEL_LAYERS)] == [
            layer for layer in SPEC.layers if not isinstance(layer, KERNEL_LAYERS)
        ]
    zero_kernel = next(layer for layer in zero.layers if isinstance(layer, (Dense, Conv2D)))
    assert getattr(zero_kernel, key) is not None
    assert absent != zero


@pytest.mark.parametrize("name", sorted(SPECS))
def test_original_spec_is_unchanged(name):
    spec = SPECS[name]
    before = copy.deepcopy(spec)
    for text in VARIANT_TEXTS:
        apply(spec, text)
    assert spec == before
    assert SPECS[name] is spec and PRESETS.get(name, spec) is spec


@pytest.mark.parametrize("text", VARIANT_TEXTS)
@pytest.mark.parametrize("name", sorted(SPECS))
def test_result_passes_check_spec(name, text):
    result = apply(SPECS[name], text)
    shapes = check_spec(result, result.name)
    assert shapes.outputs[-1] == (result.num_classes,)
    assert result.optimizer == SPECS[name].optimizer
    assert result.input_shape == SPECS[name].input_shape
