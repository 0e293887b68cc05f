"""mbrnn.training.config: presets shipped with the package, overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbrnn.errors import ConfigError
from mbrnn.training import TrainConfig, TrainError, load_config, preset_names


def test_presets_load_and_overrides_apply() -> None:
    names = preset_names()
    assert {"tiny", "shakespeare-char-lstm", "wikitext2-word-lstm",
            "fashion-mnist-pixel-lstm"} <= set(names)
    for preset in names:
        assert isinstance(load_config(preset), TrainConfig)
    cfg = load_config("tiny", {"max-steps": "7", "dropout": "0.5", "plot": "true",
                               "fractions": "0.8,0.1,0.1"})
    assert (cfg.max_steps, cfg.dropout, cfg.plot, cfg.fractions) == (7, 0.5, True, [0.8, 0.1, 0.1])


@pytest.mark.parametrize(("overrides", "match"), [
    ({"hiden_size": "8"}, "unknown config key 'hiden_size'"),
    ({"max_steps": "ten"}, "max_steps must be int"),
    ({"dropout": "true"}, "dropout must be float"),
    ({"cell": "transformer"}, "cell must be one of"),
    ({"bptt": "0"}, "bptt must be >= 1"),
])
def test_bad_config_is_a_clear_error(overrides: dict[str, str], match: str) -> None:
    with pytest.raises(TrainError, match=match):
        load_config("tiny", overrides)


def test_a_preset_may_be_a_toml_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('hidden_size = 12\nlevel = "word"\n')
    cfg = load_config(str(path), {"hidden_size": "16"})
    assert (cfg.hidden_size, cfg.level) == (16, "word")
    path.write_text("hidden_size = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(str(path))
    with pytest.raises(ConfigError, match=r"not found \(a \.toml path or one of: .*tiny"):
        load_config("no-such-preset")


def test_train_error_is_config_error() -> None:
    """Old code that catches ``TrainError`` still catches every config error."""
    assert TrainError is ConfigError and issubclass(ConfigError, ValueError)


def test_dry_run_caps_steps_and_evaluation() -> None:
    cfg = load_config("tiny", {"dry_run": "true", "max_steps": "100"})
    assert (cfg.max_steps, cfg.eval_every, cfg.eval_batches) == (4, 2, 2)
