"""`sfer explain` writes the Figure 8 grid and prints the predictions."""

from pathlib import Path

from PIL import Image

from sfer.cli import main
from sfer.explain.loading import synthetic_faces

CHECKPOINTS = Path(__file__).resolve().parents[1] / "data_samples" / "checkpoints"


def test_explain_synthetic_writes_a_png(tmp_path, capsys):
    out = tmp_path / "figs" / "explain.png"
    rc = main(["explain", "--checkpoint", str(CHECKPOINTS / "tiny_full.pt"), "--window-checkpoint",
               str(CHECKPOINTS / "tiny_rw.pt"), "--synthetic", "2", "--out", str(out)])
    assert rc == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 600
    printed = capsys.readouterr().out
    assert printed.count("synthetic #") == 2 and f"wrote {out}" in printed


def test_explain_image_files_and_options(tmp_path, capsys):
    paths = []
    for i, face in enumerate(synthetic_faces(2, seed=3).images):
        paths.append(tmp_path / f"face{i}.png")
        face.save(paths[-1])
    out = tmp_path / "explain.png"
    rc = main(["explain", "--checkpoint", str(CHECKPOINTS / "tiny_full.pt"), "--image", *map(str, paths),
               "--out", str(out), "--method", "eigencam", "--class", "0", "--topn", "5"])
    assert rc == 0 and out.stat().st_size > 0
    assert "face0.png: " in capsys.readouterr().out


def test_explain_reports_user_errors(tmp_path, capsys):
    rc = main(["explain", "--checkpoint", str(tmp_path / "missing.pt"), "--synthetic", "1",
               "--out", str(tmp_path / "x.png")])
    assert rc == 1 and "sfer explain: error: checkpoint not found" in capsys.readouterr().err
    rc = main(["explain", "--checkpoint", str(CHECKPOINTS / "tiny_rw.pt"), "--synthetic", "1", "--class", "sleepy",
               "--out", str(tmp_path / "x.png")])
    assert rc == 1 and "--class 'sleepy' is not one of" in capsys.readouterr().err
