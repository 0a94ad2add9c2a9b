"""A checkpoint whose unpickling would run code is refused, by the engine's loader and by
load_ir50 alike, in two lines that say what was refused and why, and that never advise
loading it with the safety off."""

import pickle

import pytest
import torch

from sfer.cli import main
from sfer.engine import load_checkpoint
from sfer.models import CheckpointError, build_model, load_ir50
from sfer.models.pretrained import load_weights_only


class _Payload:
    """Unpickling calls ``print``: harmless here, but any callable would run the same way."""

    def __reduce__(self):
        return (print, ("this ran while loading",))


def _write_unsafe(path):
    torch.save({"format": "sfer-checkpoint", "input_layer.0.weight": torch.zeros(1), "payload": _Payload()}, path)
    return path


def _assert_plain_refusal(message: str, path, what: str):
    lines = message.split("\n")
    assert len(lines) == 2, message
    assert lines[0].startswith(f"{path}: refused to load: ") and what in lines[0]
    assert "no file can run code" in lines[1]
    for advice in ("weights_only=False", "likely succeed", "add_safe_globals", "safe_globals", "trust"):
        assert advice not in message


@pytest.mark.parametrize("load", [
    load_checkpoint,
    load_weights_only,
    lambda path: load_ir50(build_model("tiny", "full", num_classes=6), path),
], ids=["engine", "load_weights_only", "load_ir50"])
def test_every_loader_refuses_code_in_two_plain_lines(tmp_path, capfd, load):
    path = _write_unsafe(tmp_path / "downloaded.pt")
    with pytest.raises(CheckpointError) as err:
        load(path)
    _assert_plain_refusal(str(err.value), path, "would import print")
    assert err.value.__suppress_context__  # torch's own message, with its advice, is not chained on
    assert "this ran while loading" not in capfd.readouterr().out


def test_a_foreign_object_and_a_plain_pickle_are_refused_the_same_way(tmp_path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=4))  # not torch.save: opcodes torch never writes
    with pytest.raises(CheckpointError) as err:
        load_weights_only(plain)
    _assert_plain_refusal(str(err.value), plain, "pickle instructions that a file of tensors never needs")

    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt: empty file$"):
        load_weights_only(tmp_path / "empty.pt")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt: not a PyTorch checkpoint"):
        load_weights_only(tmp_path / "notes.pt")


def test_sfer_evaluate_prints_the_two_lines_and_no_traceback(tmp_path, capsys):
    path = _write_unsafe(tmp_path / "downloaded.pt")
    assert main(["evaluate", "--checkpoint", str(path), "--out", str(tmp_path / "ev"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"sfer evaluate: error: {path}: refused to load") and err.count("\n") == 2
    assert "Traceback" not in err and "weights_only=False" not in err
