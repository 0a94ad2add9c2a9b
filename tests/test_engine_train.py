"""The training loop on the real tiny model and synthetic faces: outputs, exact resume,
faults, mismatch errors, evaluation and the command line."""

import csv
import functools
import io
import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm import tqdm

from sfer.cli import main
from sfer.engine import NonFiniteLossError, accuracy_interval, evaluate_checkpoint, fit, load_checkpoint, load_model
from sfer.engine.evaluate import build_splits
from sfer.engine import train as train_module
from sfer.engine.distributed import Context
from sfer.engine.train import load_optimizer_state, resolve_config, train_one_epoch
from sfer.models import CheckpointError, build_model

# Small enough for seconds per run on two CPU cores; CPU + num_workers=0 is bit-reproducible.
SMALL = dict(num_train=48, num_val=24, num_test=24, batch_size=16, epochs=2, device="cpu", num_workers=0,
             compile=False)


@pytest.fixture(scope="module")
def run2(tmp_path_factory):
    """An uninterrupted two-epoch run: its folder and metrics."""
    out = tmp_path_factory.mktemp("run2")
    return out, fit(out=str(out), progress=False, **SMALL)


class Faulty(Dataset):
    """Wraps a data set; after ``after`` items, returns NaN images or raises ``error``."""

    def __init__(self, dataset, after, error=None):
        self.dataset, self.after, self.error, self.served = dataset, after, error, 0
        self.classes = dataset.classes

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        self.served += 1
        image, label = self.dataset[i]
        if self.served > self.after:
            if self.error is not None:
                raise self.error
            image = torch.full_like(image, float("nan"))
        return image, label


PREPROCESSING = {"image_size": 112, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def splits(**overrides):
    cfg, _ = resolve_config(**SMALL, **overrides)
    return build_splits(cfg, PREPROCESSING)


def test_a_run_writes_checkpoints_log_metrics_and_curves(run2):
    out, metrics = run2
    assert {p.name for p in out.iterdir()} >= {"last.pt", "best.pt", "metrics.json", "log.csv", "curves.png"}
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] == metrics["test_accuracy"]
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["selected_on"] == "val"
    assert set(metrics["per_class_accuracy"]) == set(metrics["classes"])
    assert sum(map(sum, metrics["confusion_matrix"])) == SMALL["num_test"]
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]

    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and {"optimizer", "rng", "progress"} <= set(last)
    assert last["preprocessing"]["image_size"] == 112 and last["classes"] == metrics["classes"]
    best = load_checkpoint(out / "best.pt")
    assert "optimizer" not in best and best["epoch"] == metrics["best_epoch"]
    model = load_model(out / "best.pt")
    assert not model.training and model.config["variant"] == "full"


def test_resume_after_an_interruption_is_bit_identical(run2, tmp_path):
    """Killed during epoch 2, resumed from last.pt: the same weights as never stopping."""
    data = splits()
    data["train"] = Faulty(data["train"], after=SMALL["num_train"], error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        fit(out=str(tmp_path), datasets=data, progress=False, **SMALL)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1

    metrics = fit(resume=str(tmp_path / "last.pt"), progress=False)
    expected, got = load_checkpoint(run2[0] / "last.pt"), load_checkpoint(tmp_path / "last.pt")
    assert got["epoch"] == 2
    for name, tensor in expected["model"].items():
        assert torch.equal(tensor, got["model"][name]), name
    for a, b in zip(expected["optimizer"]["state"].values(), got["optimizer"]["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics["test_accuracy"] == run2[1]["test_accuracy"]
    assert [r["val_loss"] for r in got["progress"]["history"]] == \
        [r["val_loss"] for r in expected["progress"]["history"]]


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    data = splits()
    data["train"] = Faulty(data["train"], after=SMALL["num_train"] + 5)  # NaN images in epoch 2
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 2.*last good checkpoint"):
        fit(out=str(tmp_path), datasets=data, progress=False, **SMALL)
    last = load_checkpoint(tmp_path / "last.pt")
    assert last["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()


def test_mismatches_are_clear_errors(run2, tmp_path):
    out, _ = run2
    with pytest.raises(CheckpointError, match="variant='full' model; it cannot be resumed as variant='rw'"):
        fit(resume=str(out / "last.pt"), variant="rw", progress=False)
    with pytest.raises(CheckpointError, match="inference checkpoint"):
        fit(resume=str(out / "best.pt"), out=str(tmp_path), progress=False)
    with pytest.raises(CheckpointError, match="holds a variant 'full' model, not 'na'"):
        evaluate_checkpoint(out / "best.pt", variant="na", progress=False)

    renamed = splits()
    for ds in renamed.values():
        ds.classes = [f"other_{c}" for c in ds.classes]
    with pytest.raises(CheckpointError, match="trained on classes"):
        fit(resume=str(out / "last.pt"), out=str(tmp_path), datasets=renamed, progress=False)

    with pytest.raises(FileNotFoundError, match="data path does not exist"):
        fit(data=str(tmp_path / "nowhere"), dataset="rafdb", out=str(tmp_path), progress=False)


def test_evaluate_writes_the_report_and_figure_5(run2, tmp_path):
    out, metrics = run2
    result = evaluate_checkpoint(out / "best.pt", out=tmp_path, progress=False)
    assert result["accuracy"] == metrics["test_accuracy"]  # the same regenerated test split
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["confusion_matrix"] == metrics["confusion_matrix"]
    assert set(saved["report"]) >= set(metrics["classes"]) | {"accuracy", "macro avg"}
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 10_000


def test_the_command_line_trains_and_evaluates(tmp_path, capsys):
    args = ["--data", "synthetic", "--num-train", "32", "--num-val", "16", "--num-test", "16", "--epochs", "1",
            "--batch-size", "16", "--lr", "3e-4", "--device", "cpu", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main(["train", *args]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 3e-4 and metrics["config"]["num_train"] == 32

    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--out", str(tmp_path / "ev"),
                 "--no-progress"]) == 0
    assert "precision" in capsys.readouterr().out
    assert (tmp_path / "ev" / "confusion_matrix.png").is_file()

    assert main(["train", "--data", str(tmp_path / "nowhere"), "--dataset", "imagefolder",
                 "--out", str(tmp_path / "x")]) == 1
    assert "data path does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- the GPU path, on the CPU

def nan_tail_loader(batches=4, bad_from=3, batch_size=8):
    """Random images whose batches from ``bad_from`` (0-based) on are NaN: (full loader, clean prefix)."""
    images = torch.randn(batches * batch_size, 3, 112, 112, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(batches * batch_size) % 6
    images[bad_from * batch_size:] = float("nan")
    clean = bad_from * batch_size
    return (DataLoader(TensorDataset(images, labels), batch_size=batch_size),
            DataLoader(TensorDataset(images[:clean], labels[:clean]), batch_size=batch_size))


def fused_model():
    """The tiny model and a fused Adam, as on CUDA (the unfused one reads its step counts with .item())."""
    torch.manual_seed(0)
    model = build_model("tiny", "full", num_classes=6)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)


def test_the_sync_free_step_stops_at_the_epoch_end_naming_the_first_bad_step(tmp_path):
    """CUDA's path, run on the CPU: the NaN steps are counted on the device and the run
    stops at the end of the epoch, naming the first of them and the last good checkpoint."""
    loader, _ = nan_tail_loader()
    model, optimizer = fused_model()
    (tmp_path / "last.pt").touch()
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 1, step 4: training stopped at the "
                                                 r"end of the epoch \(the last good checkpoint is .*last.pt\)"):
        train_one_epoch(model, loader, optimizer, Context(torch.device("cpu")), sync_free=True,
                        last_good=tmp_path / "last.pt")


def test_the_sync_free_step_reads_the_device_only_at_the_end_or_for_the_bar(monkeypatch):
    loader, _ = nan_tail_loader(batches=3, bad_from=3)  # no NaN
    loader = list(loader)  # batches drawn beforehand: a DataLoader reads its seed with .item() (on the CPU)
    model, optimizer = fused_model()
    reads = []
    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        def counted(self, *args, _name=name, _original=getattr(torch.Tensor, name), **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(torch.Tensor, name, counted)
    train_one_epoch(model, loader, optimizer, Context(torch.device("cpu")), sync_free=True)
    assert reads == ["tolist"]  # once, at the end of the epoch: nothing per step
    reads.clear()
    bar = tqdm(total=len(loader), file=io.StringIO())
    train_one_epoch(model, loader, optimizer, Context(torch.device("cpu")), sync_free=True, bar=bar)
    assert reads == ["tolist"] * 2  # the bar's read at step 1 (then every LOG_EVERY steps), and the end
    assert "loss=" in bar.postfix


def test_an_unfused_optimiser_state_resumes_into_a_fused_one_and_back():
    torch.manual_seed(0)
    model = build_model("tiny", "na", num_classes=6)
    images, labels = torch.randn(4, 3, 112, 112), torch.arange(4)
    unfused = torch.optim.Adam(model.parameters(), lr=1e-3)
    F.cross_entropy(model(images), labels).backward()
    unfused.step()
    fused = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    load_optimizer_state(fused, unfused.state_dict())
    assert fused.param_groups[0]["fused"] and fused.param_groups[0]["foreach"] is None
    fused.step()  # the fused kernel accepts the loaded state
    back = torch.optim.Adam(model.parameters(), lr=1e-3)
    load_optimizer_state(back, fused.state_dict())
    assert not back.param_groups[0]["fused"]
    back.step()
    assert int(next(iter(back.state.values()))["step"]) == 3  # one step in each of the three


def test_save_every_writes_last_pt_every_k_epochs_and_after_the_last(tmp_path):
    data = splits()
    data["train"] = Faulty(data["train"], after=2 * SMALL["num_train"], error=KeyboardInterrupt())  # dies in epoch 3
    with pytest.raises(KeyboardInterrupt):
        fit(out=str(tmp_path), datasets=data, progress=False, **{**SMALL, "epochs": 3}, save_every=2)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2  # epoch 1's was not written, epoch 2's was
    assert len(list(csv.DictReader(open(tmp_path / "log.csv")))) == 2

    metrics = fit(resume=str(tmp_path / "last.pt"), progress=False)
    assert metrics["epochs"] == 3 and metrics["config"]["save_every"] == 2
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3  # the last epoch is always saved
    with pytest.raises(ValueError, match="save_every must be >= 1"):
        fit(save_every=0, out=str(tmp_path))


def test_compiled_training_never_recompiles(tmp_path, monkeypatch):
    """torch.compile with the eager backend (dynamo's tracing and guards without code
    generation). 40 images in batches of 16 leave a partial batch of 8 (dropped), and
    validation and the test run the uncompiled model: any recompilation is an error."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    graphs = []
    original = train_module.train_one_epoch

    def counted_epoch(*args, **kwargs):
        result = original(*args, **kwargs)
        graphs.append(counters["stats"]["unique_graphs"])
        return result

    monkeypatch.setattr(train_module, "train_one_epoch", counted_epoch)
    settings = {**SMALL, "num_train": 40, "num_val": 8, "num_test": 8, "compile": True}
    metrics = fit(out=str(tmp_path), progress=False, **settings)
    assert metrics["epochs"] == 2 and graphs[0] > 0 and graphs[1] == graphs[0]
    assert list(csv.DictReader(open(tmp_path / "log.csv")))[0]["images_per_s"]
    torch._dynamo.reset()
    with pytest.raises(ValueError, match="make no full batch of 16 \\(compiled training drops the partial one\\)"):
        fit(out=str(tmp_path / "x"), progress=False, **{**settings, "num_train": 8})


def test_a_last_batch_of_one_image_trains(tmp_path, monkeypatch):
    """Batch norm fails only on a map of one value per channel (N*H*W = 1); a single
    image's smallest map here is L4's 7x7, so a last batch of one image trains: 17
    images in batches of 16 make two steps, and every image is seen."""
    seen = []
    original = train_module.train_one_epoch

    def counted_epoch(net, loader, *args, **kwargs):
        seen.append([labels.numel() for _, labels in loader])
        return original(net, loader, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", counted_epoch)
    metrics = fit(out=str(tmp_path), progress=False, **{**SMALL, "num_train": 17, "epochs": 1})
    assert seen == [[16, 1]] and metrics["epochs"] == 1
    assert all(torch.isfinite(t).all() for t in load_checkpoint(tmp_path / "last.pt")["model"].values()
               if t.is_floating_point())


def test_a_resume_trains_with_the_optimiser_settings_it_is_given(run2, tmp_path):
    """``--resume last.pt --weight-decay 0``: the resumed epochs use weight decay 0 (and
    new betas), as last.pt, best.pt and metrics.json then record, not the file's 1e-4."""
    shutil.copytree(run2[0], tmp_path, dirs_exist_ok=True)
    metrics = fit(resume=str(tmp_path / "last.pt"), out=str(tmp_path), epochs=3, weight_decay=0.0,
                  betas=(0.8, 0.99), progress=False)
    assert metrics["config"]["weight_decay"] == 0.0
    for group in load_checkpoint(tmp_path / "last.pt")["optimizer"]["param_groups"]:
        assert group["weight_decay"] == 0.0 and tuple(group["betas"]) == (0.8, 0.99)


def write_rafdb(root, per_class: int, test_per_class: int):
    """A RAF-DB tree of plain synthetic faces: ``per_class`` training and ``test_per_class`` test images a class."""
    from sfer.data import synthetic_splits

    faces = synthetic_splits(7 * per_class, 1, 7 * test_per_class, seed=0, classes="basic")
    lines = []
    for split, count in (("train", 7 * per_class), ("test", 7 * test_per_class)):
        ds = faces[split]
        for i in range(count):
            image, label = ds[i]
            name = f"{split}_{i:05d}"
            (root / "Image" / "aligned").mkdir(parents=True, exist_ok=True)
            image.save(root / "Image" / "aligned" / f"{name}_aligned.jpg")
            lines.append(f"{name}.jpg {label + 1}")
    (root / "EmoLabel").mkdir(exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_text("\n".join(lines) + "\n")
    return root


def test_rafdb_chooses_the_best_epoch_on_train_held_out_unless_told_to_use_test(tmp_path):
    """RAF-DB has no validation split. By default 10% of train (seeded, stratified) chooses
    the best epoch; select_on_test (the papers' protocol) chooses on the test split, says
    so in a warning and records it in metrics.json."""
    root = write_rafdb(tmp_path / "raf", per_class=10, test_per_class=2)
    settings = {**SMALL, "data": str(root), "dataset": "rafdb", "epochs": 1}
    held = fit(out=str(tmp_path / "held"), progress=False, **settings)
    assert held["selected_on"] == "held-out train"
    assert json.loads((tmp_path / "held" / "metrics.json").read_text())["selected_on"] == "held-out train"
    cfg, _ = resolve_config(**settings)
    data = build_splits(cfg, PREPROCESSING)
    assert (len(data["train"]), len(data["val"]), len(data["test"])) == (63, 7, 14)  # 10% of 70 held out
    with pytest.warns(UserWarning, match="chooses the best epoch on the test split"):
        on_test = fit(out=str(tmp_path / "test"), progress=False, select_on_test=True, **settings)
    assert on_test["selected_on"] == "test"
    with pytest.raises(ValueError, match="select_on_test: synthetic has a validation split of its own"):
        fit(out=str(tmp_path / "x"), progress=False, select_on_test=True, **SMALL)


def test_accuracy_interval_is_wilson_and_stays_inside_zero_to_one():
    share, low, high = accuracy_interval(288, 300)
    assert share == 0.96 and (low, high) == pytest.approx((0.9314, 0.9770), abs=1e-4)  # Wilson's interval, by hand
    assert accuracy_interval(300, 300)[2] == pytest.approx(1.0) and accuracy_interval(0, 300)[1] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="n = 0"):
        accuracy_interval(0, 0)
