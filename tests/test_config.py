"""Training configs (bmclib.config): presets, files, saved configs and validation."""
import json

import pytest

from bmclib.config import (LEGACY_DEFAULTS, PRESETS, TrainConfig, load_config, preset, same_config, saved_config,
                           validate_config)


def test_presets_and_overrides():
    for name in PRESETS:
        cfg = preset(name)
        assert cfg.preset == name and isinstance(cfg, TrainConfig)
        validate_config(cfg)  # every preset is a valid config
    cfg = preset("tiny", steps=7, lambda_a=0.5)
    assert (cfg.steps, cfg.lambda_a) == (7, 0.5) and preset("tiny").steps != 7
    with pytest.raises(ValueError, match="preset must be one of"):
        preset("huge")


def test_config_files_override_their_preset_and_name_bad_fields(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("preset: tiny\nsteps: 5\nmodel: {width: 0.5}\n")
    cfg = load_config(good, seed=3)
    assert (cfg.preset, cfg.steps, cfg.model.width, cfg.seed) == ("tiny", 5, 0.5, 3)
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"preset": "tiny", "bmc_grad": "maps"}))
    assert load_config(js).bmc_grad == "maps"
    for text, message in [("steps: 0\n", r"c2.yaml: config.steps must be >= 1, got 0"),
                          ("bmc_root: nowhere\n", r"bmc_root must be one of"),
                          ("stepz: 3\n", r"unknown config keys \['stepz'\]"),
                          ("steps: ten\n", r"steps"),
                          ("- 1\n", r"expected a mapping of config keys, got a list"),
                          ("preset: huge\n", r"preset must be one of")]:
        bad = tmp_path / "c2.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_config(bad)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_saved_configs_resume_with_the_defaults_they_were_trained_with(tmp_path, monkeypatch):
    cfg = preset("tiny", source="data/x")
    saved = cfg.to_dict()
    assert same_config(saved, cfg)
    monkeypatch.chdir(tmp_path)  # relative and absolute paths to one file are one config
    assert same_config({**saved, "source": str(tmp_path / "data" / "x")}, cfg)
    assert not same_config({**saved, "steps": cfg.steps + 1}, cfg)
    assert not same_config({**saved, "nonsense": 1}, cfg)  # not a config: not the same
    # a checkpoint written before a field existed was trained with its legacy value
    old = {k: v for k, v in saved.items() if k not in LEGACY_DEFAULTS}
    for key, value in LEGACY_DEFAULTS.items():
        assert getattr(saved_config(old, "checkpoint"), key) == value


def test_one_list_of_preset_names():
    """config.PRESETS names the presets; the data sizes, the lifter's and the regime map's sizes are
    keyed by the same names (each component may leave a preset out, never add one)."""
    from bmclib.bench.regime import RegimeConfig
    from bmclib.data.synth import PRESETS as DATA_SIZES
    from bmclib.lifting import LiftingConfig

    assert set(DATA_SIZES) == set(PRESETS)
    assert set(LiftingConfig._PRESETS) <= set(PRESETS) and set(RegimeConfig._PRESETS) <= set(PRESETS)
