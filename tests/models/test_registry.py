"""`dacast.models.get_model`: the name -> constructor registry the workflow builds its models with."""

from __future__ import annotations

import pytest

from dacast.models import MODELS, CoupledLorenz63, Lorenz63, Lorenz96, get_model
from dacast.workflow.twin.config import ModelSpec, build_model


def test_registry_names_and_constructors() -> None:
    assert MODELS == {"lorenz63": Lorenz63, "lorenz96": Lorenz96, "coupled_lorenz63": CoupledLorenz63}
    assert get_model("lorenz96") is Lorenz96 and get_model("Lorenz63") is Lorenz63
    assert get_model("lorenz96")(n_state=10, forcing=4.0) == Lorenz96(n_state=10, forcing=4.0)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(KeyError) as err:
        get_model("lorenz05")
    assert err.value.args[0] == "unknown model 'lorenz05'; choose one of: lorenz63, lorenz96, coupled_lorenz63"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (ModelSpec(name="lorenz63", n_state=40, forcing=3.0), Lorenz63()),
        (ModelSpec(name="lorenz96", n_state=12, forcing=6.0), Lorenz96(n_state=12, forcing=6.0)),
        (
            ModelSpec(name="coupled_lorenz63", omega=3.0, damping=1.5, x3_star=0.5, variant="x1sq"),
            CoupledLorenz63(omega=3.0, damping=1.5, x3_star=0.5, variant="x1sq"),
        ),
    ],
)
def test_build_model_passes_only_the_parameters_of_each_model(spec: ModelSpec, expected: object) -> None:
    assert build_model(spec) == expected
