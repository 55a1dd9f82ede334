"""The base config: locked, every key typed; overrides parse by type and catch typos."""

import pytest

from rnnlab import config as config_lib


def test_base_config_is_locked_with_open_dicts():
    c = config_lib.get_config()
    assert c.is_locked
    with pytest.raises(AttributeError):
        c.model.hiden_size = 3
    c.model.cell_options.forget_bias = 2.0  # open: the cell validates
    c.data.options.anything = 1
    assert c.model.cell == "lstm" and c.optim.rmsprop_decay == 0.95


def test_overrides_parse_by_type():
    c = config_lib.apply_overrides(
        config_lib.get_config(),
        [
            "model.hidden_size=256",
            "model.bidirectional=true",
            "optim.learning_rate=1e-2",
            "optim.clip_value=3",  # an int literal into a float key
            "data.path=tinyshakespeare",
            "model.cell_options.forget_bias=2.5",
            "model.cell_options.recurrent_init=identity",  # not a literal: stays a str
            "data.options={'length': 100}",
        ],
    )
    assert c.model.hidden_size == 256 and isinstance(c.model.hidden_size, int)
    assert c.model.bidirectional is True
    assert c.optim.learning_rate == 0.01 and isinstance(c.optim.clip_value, float)
    assert c.data.path == "tinyshakespeare"
    assert c.model.cell_options.to_dict() == {"forget_bias": 2.5, "recurrent_init": "identity"}
    assert c.data.options.to_dict() == {"length": 100}


@pytest.mark.parametrize(
    "override, error, words",
    [
        ("model.hiden_size=3", KeyError, ["model.hidden_size", "Did you mean"]),
        ("optim.lerning_rate=3", KeyError, ["optim.learning_rate"]),
        ("model.hidden_size=big", TypeError, ["model.hidden_size", "int", "'big'"]),
        ("model.hidden_size=2.5", TypeError, ["int", "'2.5'"]),
        ("model.bidirectional=maybe", TypeError, ["bool", "'maybe'"]),
        ("optim.learning_rate=fast", TypeError, ["float", "'fast'"]),
        ("model.cell_options=3", TypeError, ["dict"]),
        ("model.hidden_size", ValueError, ["key=value"]),
    ],
)
def test_override_errors(override, error, words):
    with pytest.raises(error) as info:
        config_lib.apply_overrides(config_lib.get_config(), [override])
    for w in words:
        assert w in str(info.value)
    assert isinstance(info.value, (KeyError, ValueError))  # what the CLI reports as bad input


def test_remat_modes_reach_the_engine():
    """``model.remat`` names the engine's modes; a bad one is refused with the choices."""
    from rnnlab import models

    spec = {"out_features": 3, "vocab_size": 3, "readout": "all", "loss": "xent"}
    for name, want in (("none", False), ("step", True), ("chunked", "chunked")):
        c = config_lib.get_config()
        config_lib.apply_overrides(c, [f"model.remat={name}"])
        assert models.build(c.model, spec).remat == want
    c = config_lib.get_config()
    config_lib.apply_overrides(c, ["model.remat=sqrt"])
    with pytest.raises(ValueError, match="chunked"):
        models.build(c.model, spec)
