"""scikit-learn's own estimator checks, run on EmbeddingVectorizer with a real tiny model.

``parametrize_with_checks`` needs estimator instances when pytest collects
this module, before any fixture runs: they name a placeholder model, and the
test gives each check the session's tiny model (``set_params``) before it
runs. The ids stay the same in every process of a run.

``SCIPY_ARRAY_API=1`` is set by the root conftest, before sklearn is imported.
"""

from __future__ import annotations

import functools

import pytest
import sklearn.utils.estimator_checks as estimator_checks
from conftest import PLACEHOLDER_MODEL, STRICT_XFAIL
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from skembed import EmbeddingVectorizer

ESTIMATORS = [
    EmbeddingVectorizer(PLACEHOLDER_MODEL, device="cpu"),
    # The other backend, and a missing-value policy that makes
    # the estimator accept NaN (the allow_nan tag follows handle_missing).
    EmbeddingVectorizer(
        PLACEHOLDER_MODEL,
        backend="transformers",
        device="cpu",
        normalize=True,
        handle_missing="zero",
    ),
]
#: Fine-tuning on the labels y in fit: one optimiser step of four texts, then the checks.
TUNING = EmbeddingVectorizer(PLACEHOLDER_MODEL, device="cpu", fine_tune=True,
                             fine_tune_params={"steps": 1, "batch_size": 4}, random_state=0)

# One line each: why the check does not apply.
EXPECTED_FAILED_CHECKS = {
    "check_fit1d": "a 1-D X is a valid input: one column of texts, as in TfidfVectorizer",
}

CHECKS = parametrize_with_checks(
    ESTIMATORS,
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
    **STRICT_XFAIL,
)

# Public checks of sklearn.utils.estimator_checks that check_estimator does not
# run (sklearn runs them from its own test_common.py) and that apply to a
# fitted transformer taking 2-D input. The other public ones do not apply:
# classifier/regressor/cluster/outlier and sample_weight checks,
# check_estimators_data_not_an_array (needs y; its transformer twin runs above),
# check_transformers_unfitted_stateless (stateless only), check_requires_y_none,
# check_fit_non_negative, check_nonsquare_error, check_sparsify_coefficients
# (tags we do not have), check_array_api_input_and_values/_mixed_inputs/
# _same_namespace (array API support, which text input cannot have).
EXTRA_CHECKS = [
    "check_dataframe_column_names_consistency",
    "check_get_feature_names_out_error",
    "check_global_output_transform_pandas",
    "check_global_set_output_transform_polars",
    "check_inplace_ensure_writeable",
    "check_param_validation",
    "check_set_output_transform",
    "check_set_output_transform_pandas",
    "check_set_output_transform_polars",
    "check_transformer_get_feature_names_out",
    "check_transformer_get_feature_names_out_pandas",
]


def _check_name(check) -> str:
    while isinstance(check, functools.partial):
        check = check.func
    return check.__name__


@CHECKS
def test_sklearn_estimator_checks(estimator, check, tiny_model):
    check(estimator.set_params(model=tiny_model))


@pytest.mark.slow
@pytest.mark.extras  # fine-tuning needs datasets and accelerate
@parametrize_with_checks(
    [TUNING], expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS, **STRICT_XFAIL
)
def test_sklearn_estimator_checks_when_fine_tuning_on_labels(estimator, check, tiny_model):
    check(estimator.set_params(model=tiny_model))


def test_expected_failures_are_generated_checks():
    from sklearn.utils.estimator_checks import estimator_checks_generator

    # The checks parametrize_with_checks runs, as scikit-learn generates them.
    generated = {
        _check_name(check)
        for _, check in estimator_checks_generator(
            ESTIMATORS[0], legacy=True, expected_failed_checks=EXPECTED_FAILED_CHECKS
        )
    }
    assert len(generated) > 40  # the whole legacy + API suite, not a subset
    assert set(EXPECTED_FAILED_CHECKS) <= generated
    # The extra checks really are extra: check_estimator does not run them.
    assert not set(EXTRA_CHECKS) & generated
    assert all(hasattr(estimator_checks, name) for name in EXTRA_CHECKS)


# The set_output checks fit on a dataframe and transform an array, and back,
# on purpose: the feature-name warnings this raises are expected there.
@pytest.mark.filterwarnings("ignore:X (does not have valid|has) feature names:UserWarning")
@pytest.mark.parametrize("check_name", [  # the polars ones need the polars extra
    pytest.param(name, marks=pytest.mark.extras) if "polars" in name else name
    for name in EXTRA_CHECKS
])
def test_public_checks_not_run_by_check_estimator(check_name, tiny_model):
    check = getattr(estimator_checks, check_name)
    check(type(ESTIMATORS[0]).__name__, ESTIMATORS[0].set_params(model=tiny_model))


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=["default", "transformers-zero"])
def test_tags_are_honest(estimator):
    tags = get_tags(estimator)
    assert tags.input_tags.string is True
    assert tags.input_tags.two_d_array is True
    assert tags.input_tags.sparse is False
    assert tags.input_tags.allow_nan is (estimator.handle_missing != "error")
    assert tags.transformer_tags.preserves_dtype == ["float32"]
    assert tags.requires_fit is True
    assert not tags.non_deterministic
    assert not tags.no_validation
    assert not tags._skip_test
