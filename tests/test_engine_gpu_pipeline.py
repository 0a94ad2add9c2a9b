"""The engine takes the uint8 input pipeline on CUDA only; forced on the CPU (no GPU in the
tests), it trains and evaluates end to end."""

import pytest
import torch

from sfer.data.transforms import GpuPreprocess
from sfer.engine import evaluate as evaluate_module
from sfer.engine import evaluate_checkpoint, fit
from sfer.engine import train as train_module
from sfer.engine.distributed import Context
from sfer.engine.evaluate import uses_device_preprocessing
from sfer.engine.train import _load_data, resolve_config

SMALL = dict(num_train=16, num_val=8, num_test=8, batch_size=8, epochs=1, device="cpu", num_workers=0,
             compile=False)


@pytest.mark.parametrize("device, uint8", [("cuda", True), ("cuda:1", True), ("cpu", False), ("mps", False)])
def test_only_cuda_takes_the_uint8_pipeline(device, uint8):
    assert uses_device_preprocessing(torch.device(device)) is uint8


def select_uint8(monkeypatch):
    """Select the uint8 pipeline on the CPU, as on CUDA."""
    for module in (train_module, evaluate_module):
        monkeypatch.setattr(module, "uses_device_preprocessing", lambda device: True)


def test_the_cpu_keeps_the_pil_pipeline():
    cfg, _ = resolve_config(**SMALL)
    data = _load_data(cfg, None, Context(torch.device("cpu")), None)
    image, _ = data.splits["train"][0]
    assert image.dtype == torch.float32 and data.train_preprocess is None and data.collate_fn is None


def test_where_selected_workers_ship_uint8_and_the_device_erases_in_training_only(monkeypatch):
    select_uint8(monkeypatch)
    cfg, _ = resolve_config(**SMALL, erase_p=0.25)
    data = _load_data(cfg, None, Context(torch.device("cpu")), None)
    image, _ = data.splits["train"][0]
    assert image.dtype == torch.uint8 and data.splits["val"][0][0].dtype == torch.uint8
    assert isinstance(data.train_preprocess, GpuPreprocess) and data.train_preprocess.erase_p == 0.25
    assert data.eval_preprocess.erase_p == 0.0 and data.collate_fn is not None


def test_a_run_on_the_uint8_pipeline_trains_and_its_checkpoint_evaluates_the_same_either_way(tmp_path, monkeypatch):
    seen = []
    original = train_module.train_one_epoch

    def spied(net, loader, *args, **kwargs):
        seen.append((next(iter(loader))[0].dtype, kwargs["preprocess"]))
        return original(net, loader, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", spied)
    with monkeypatch.context() as patch:
        select_uint8(patch)
        metrics = fit(out=str(tmp_path), progress=False, **SMALL)
        on_device = evaluate_checkpoint(tmp_path / "best.pt", progress=False)
    assert seen[0][0] == torch.uint8 and isinstance(seen[0][1], GpuPreprocess)
    assert on_device["accuracy"] == metrics["test_accuracy"]
    # the synthetic faces are drawn at the input size: no resize, so both pipelines feed the same pixels
    on_host = evaluate_checkpoint(tmp_path / "best.pt", progress=False)
    assert on_host["confusion_matrix"] == on_device["confusion_matrix"] and on_host["loss"] == on_device["loss"]
