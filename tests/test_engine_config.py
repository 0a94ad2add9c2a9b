"""Configs: the files hold the paper's section 4.3 values; flags override files."""

from pathlib import Path

import pytest

from sfer.engine import TrainConfig
from sfer.engine.config import load_config_file, make_config
from sfer.engine.train import resolve_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# DESIGN.md, "Training": lr, weight decay, batch, patience per data set (paper, section 4.3)
PAPER = {
    "fer2013": (1e-5, 1e-4, 64, 50),
    "ferplus": (1e-5, 1e-4, 100, 50),
    "rafdb": (3e-5, 1e-4, 64, 50),
    "affectnet": (2e-6, 5e-5, 64, 12),
    "scfed": (1e-5, 1e-4, 64, 50),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_config_files_hold_the_papers_recipe(name):
    cfg = make_config(CONFIGS / f"{name}.yaml")
    assert (cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.patience) == PAPER[name]
    assert cfg.betas[0] == 0.9 and cfg.schedule == "constant" and cfg.preset == "paper"
    assert cfg.flip and cfg.erase_p == 0.5  # the paper's augmentation: flip and random erasing
    assert isinstance(cfg.lr, float)


def test_synthetic_file_states_the_defaults():
    """``sfer train --data synthetic`` with no --config must train what configs/synthetic.yaml says."""
    values = load_config_file(CONFIGS / "synthetic.yaml")
    defaults = TrainConfig().to_dict()
    assert {k: defaults[k] for k in values} == values


def test_flags_override_the_file_and_unset_flags_do_not():
    cfg = make_config(CONFIGS / "rafdb.yaml", lr=1e-4, batch_size=None, out="x")
    assert cfg.lr == 1e-4 and cfg.batch_size == 64 and cfg.out == "x" and cfg.dataset == "rafdb"


def test_data_synthetic_on_a_real_recipe_switches_the_loader():
    cfg, resumed = resolve_config(CONFIGS / "fer2013.yaml", data="synthetic")
    assert cfg.dataset == "synthetic" and cfg.lr == 1e-5 and resumed is None


def test_unknown_or_invalid_keys_are_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 0.1\n")
    with pytest.raises(ValueError, match="unknown configuration key.*learning_rate"):
        make_config(bad)
    with pytest.raises(ValueError, match="dataset 'cifar'"):
        make_config(dataset="cifar")
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        make_config(epochs=0)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        make_config(tmp_path / "missing.yaml")


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 3e-5\nweight_decay: 1e-4\n")  # YAML 1.1 reads these as strings
    cfg = make_config(path)
    assert cfg.lr == 3e-5 and cfg.weight_decay == 1e-4
