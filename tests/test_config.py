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


# ------------------------------------------------------------------ the schema and validate


def _leaves(config, prefix=""):
    out = []
    for k, v in config.items():
        key = f"{prefix}{k}"
        if hasattr(v, "items") and key not in config_lib.OPEN_DICTS:
            out += _leaves(v, key + ".")
        elif key not in config_lib.OPEN_DICTS:
            out.append(key)
    return out


def test_every_key_has_exactly_one_schema_entry():
    assert sorted(_leaves(config_lib.get_config())) == sorted(config_lib.SCHEMA)
    config_lib.validate(config_lib.get_config())  # the defaults are valid


@pytest.mark.slow  # imports every experiment file
def test_every_experiment_config_validates():
    """An experiment's own values obey the rules (fix the experiment, not the rule)."""
    from rnnlab import registry

    for name in registry.names():
        module = registry.load(name)
        for variant in module.VARIANTS:
            c = module.get_config(variant)
            config_lib.validate(c, planned=getattr(module, "PLANNED", ()))


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.hidden_size=-5", ["model.hidden_size", "an int >= 1", "-5"]),
        ("model.hidden_size=0", ["model.hidden_size", ">= 1", "got 0"]),
        ("model.embed_dim=0", ["model.embed_dim", ">= 1"]),
        ("model.num_layers=0", ["model.num_layers"]),
        ("model.dropout=1.0", ["model.dropout", "[0, 1)"]),
        ("model.dropout=-0.1", ["model.dropout"]),
        ("model.remat=sqrt", ["model.remat", "chunked"]),
        ("model.cell=lsmt", ["model.cell", "lstm"]),
        ("model.architecture=transformer", ["model.architecture", "seq2seq"]),
        ("data.name=nosuch", ["data.name", "text"]),
        ("data.seq_length=0", ["data.seq_length"]),
        ("data.batch_size=-1", ["data.batch_size"]),
        ("data.val_fraction=0", ["data.val_fraction", "(0, 1)"]),
        ("data.val_fraction=1", ["data.val_fraction"]),
        ("data.eval_batches=-1", ["data.eval_batches"]),
        ("optim.name=adamx", ["optim.name", "adamw"]),
        ("optim.learning_rate=-1", ["optim.learning_rate", "> 0", "-1"]),
        ("optim.learning_rate=0", ["optim.learning_rate"]),
        ("optim.learning_rate=nan", ["optim.learning_rate", "finite"]),
        ("optim.learning_rate=inf", ["optim.learning_rate", "finite"]),
        ("optim.decay_rate=0", ["optim.decay_rate"]),
        ("optim.clip_value=0", ["optim.clip_value"]),
        ("optim.weight_decay=-0.1", ["optim.weight_decay"]),
        ("optim.momentum=1.0", ["optim.momentum"]),
        ("optim.rmsprop_decay=1.5", ["optim.rmsprop_decay"]),
        ("optim.eps=-1e-8", ["optim.eps"]),
        ("train.num_steps=0", ["train.num_steps"]),
        ("train.eval_every=0", ["train.eval_every"]),
        ("train.num_seeds=0", ["train.num_seeds"]),
        ("train.time_limit_s=inf", ["train.time_limit_s"]),
        ("train.checkpoint_every=-1", ["train.checkpoint_every"]),
        ("train.divergence_factor=0.5", ["train.divergence_factor", "> 1"]),
        ("seed=-1", ["seed"]),
        # the open dicts, against their owners' signatures
        ("model.cell_options.forget_bias=abc", ["forget_bias", "float", "'abc'"]),
        ("model.cell_options.forgetbias=1.0", ["forgetbias", "forget_bias"]),
        ("model.cell_options.hidden_size=3", ["model.hidden_size"]),
        ("model.cell_options.chrono_tmax=1.0", ["chrono_tmax", "> 2"]),
        ("data.options.nosuch=1", ["nosuch", "text"]),
        ("data.options.seq_length=3", ["data.seq_length"]),
    ],
)
def test_out_of_range_values_are_refused_naming_the_key(override, words):
    c = config_lib.apply_overrides(config_lib.get_config(), [override])
    with pytest.raises(config_lib.ConfigError) as info:
        config_lib.validate(c)
    assert len(str(info.value).splitlines()) <= 3
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    assert isinstance(info.value, config_lib.UserError) and isinstance(info.value, ValueError)


def test_cell_option_values_are_checked_by_the_cell():
    c = config_lib.apply_overrides(
        config_lib.get_config(), ["model.cell=elman", "model.cell_options.activation=sigmoid"]
    )
    with pytest.raises(config_lib.ConfigError, match="activation must be one of"):
        config_lib.validate(c)
    good = ["model.cell=elman", "model.cell_options.activation=relu"]
    config_lib.validate(config_lib.apply_overrides(config_lib.get_config(), good))


def test_warmup_must_be_shorter_than_the_run_and_planned_keys_may_be_zero():
    c = config_lib.apply_overrides(
        config_lib.get_config(),
        ["optim.schedule=warmup_cosine", "optim.warmup_steps=100", "train.num_steps=50"],
    )
    with pytest.raises(config_lib.ConfigError, match="optim.warmup_steps"):
        config_lib.validate(c)
    c = config_lib.apply_overrides(config_lib.get_config(), ["train.num_steps=0"])
    with pytest.raises(config_lib.ConfigError, match="train.num_steps"):
        config_lib.validate(c)
    config_lib.validate(c, planned=("train.num_steps",))  # char-rnn: fit the time budget


def test_data_path_must_be_a_regular_text_file(tmp_path, monkeypatch):
    def refused(path, match):
        c = config_lib.apply_overrides(config_lib.get_config(), [f"data.path={path}"])
        with pytest.raises(config_lib.ConfigError, match=match):
            config_lib.validate(c)

    refused("/dev/zero", "not a regular file")  # would be read until memory runs out
    refused(tmp_path, "directory")
    refused(tmp_path / "missing.txt", "no such file")
    (tmp_path / "bin").write_bytes(b"ab\x00cd")
    refused(tmp_path / "bin", "binary")
    (tmp_path / "big.txt").write_text("x" * 2000)
    monkeypatch.setattr(config_lib, "MAX_TEXT_BYTES", 1000)
    refused(tmp_path / "big.txt", "MiB")
    (tmp_path / "ok.txt").write_text("hello\n" * 10)
    for fine in (tmp_path / "ok.txt", "tinyshakespeare", ""):
        config_lib.validate(
            config_lib.apply_overrides(config_lib.get_config(), [f"data.path={fine}"])
        )
    # a dataset that reads no path does not look at data.path (data_kwargs refuses it instead)
    c = config_lib.apply_overrides(config_lib.get_config(), ["data.name=adding", "data.path="])
    config_lib.validate(c)
