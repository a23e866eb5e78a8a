import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from backend.core.model import PaletteNet
from backend.core.weights import load_weights
from tests.test_data import dataset  # noqa: F401  (the prepared tiny dataset fixture)
from training import TrainingError, train
from training.dataset import PairDataset, parse_mix, training_batch


def train_args(data, out, *extra):
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(
        [
            "--data",
            str(data),
            "--out",
            str(out),
            "--batch",
            "2",
            "--size",
            "32",
            "--val-every",
            "2",
            "--sample-every",
            "2",
            "--threads",
            "1",
            *extra,
        ]
    )


def test_phase_one_overfits_one_batch(dataset):  # noqa: F811
    torch.manual_seed(0)
    batch = training_batch(
        PairDataset(dataset, "train", parse_mix("hue=1")), 0, seed=0, rank=0, batch=2, size=32
    )
    model = PaletteNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(120):
        loss = F.mse_loss(model(batch["source"], batch["target_palette"]), batch["target_ab"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 10


def test_resume_continues_exactly(dataset, tmp_path):  # noqa: F811
    assert (
        train.run(train_args(dataset, tmp_path / "straight", "--phase", "1", "--steps", "4")) == 0
    )
    assert train.run(train_args(dataset, tmp_path / "split", "--phase", "1", "--steps", "2")) == 0
    assert (
        train.run(
            train_args(dataset, tmp_path / "split", "--phase", "1", "--steps", "4", "--resume")
        )
        == 0
    )
    straight = load_weights(tmp_path / "straight" / "weights.pt").state_dict()
    resumed = load_weights(tmp_path / "split" / "weights.pt").state_dict()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    rows = (tmp_path / "split" / "metrics.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["step", "1", "2", "3", "4"]
    assert list((tmp_path / "split" / "samples").glob("step_*.png"))


def test_phase_two_trains_the_decoder_with_the_encoder_frozen(dataset, tmp_path):  # noqa: F811
    assert train.run(train_args(dataset, tmp_path / "one", "--phase", "1", "--steps", "1")) == 0
    start = load_weights(tmp_path / "one" / "weights.pt").state_dict()
    assert (
        train.run(
            train_args(
                dataset,
                tmp_path / "two",
                "--phase",
                "2",
                "--steps",
                "2",
                "--init",
                str(tmp_path / "one" / "weights.pt"),
                "--freeze-encoder",
            )
        )
        == 0
    )
    end = load_weights(tmp_path / "two" / "weights.pt").state_dict()
    changed = {k for k in start if not torch.equal(start[k], end[k])}
    assert changed and all(k.startswith("decoder.") for k in changed)
    metrics = (tmp_path / "two" / "metrics.csv").read_text().splitlines()
    assert float(metrics[-1].split(",")[4]) > 0  # the discriminator loss was computed


def test_phase_two_needs_phase_one_weights(dataset, tmp_path):  # noqa: F811
    with pytest.raises(TrainingError, match="--init"):
        train.run(train_args(dataset, tmp_path, "--phase", "2", "--steps", "1"))


def test_two_process_ddp_ends_with_identical_weights(dataset, tmp_path):  # noqa: F811
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "training",
        "train",
        "--phase",
        "1",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path),
        "--steps",
        "2",
        "--batch",
        "1",
        "--size",
        "32",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(tmp_path / f"rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert (tmp_path / "weights.pt").exists()


def test_batch_workers_change_nothing_and_max_minutes_stops_at_a_saved_step(
    dataset,  # noqa: F811
    tmp_path,
):
    common = ("--phase", "1", "--steps", "3")
    assert train.run(train_args(dataset, tmp_path / "inline", *common)) == 0
    assert train.run(train_args(dataset, tmp_path / "workers", *common, "--workers", "2")) == 0
    inline = load_weights(tmp_path / "inline" / "weights.pt").state_dict()
    workers = load_weights(tmp_path / "workers" / "weights.pt").state_dict()
    assert all(torch.equal(inline[k], workers[k]) for k in inline)

    # A budget of no time: the first step is also the last, validated and saved as such.
    early = train_args(dataset, tmp_path / "early", "--phase", "1", "--steps", "50",
                       "--max-minutes", "1e-9")  # fmt: skip
    assert train.run(early) == 0
    rows = (tmp_path / "early" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].split(",")[5] != ""  # one step, with validation
    assert load_weights(tmp_path / "early" / "weights.pt") is not None


def test_phase_two_takes_the_model_options_of_its_init(dataset, tmp_path):  # noqa: F811
    one = train_args(dataset, tmp_path / "one", "--phase", "1", "--steps", "1",
                     "--condition", "target", "--base", "none")  # fmt: skip
    assert train.run(one) == 0
    two = train_args(dataset, tmp_path / "two", "--phase", "2", "--steps", "1",
                     "--init", str(tmp_path / "one" / "weights.pt"))  # fmt: skip
    assert train.run(two) == 0  # the default condition (source+target) would not fit
    model = load_weights(tmp_path / "two" / "weights.pt")
    assert (model.condition, model.base) == ("target", "none")


def test_export_writes_half_precision_with_notes(dataset, tmp_path, capsys):  # noqa: F811
    from training.__main__ import main

    assert train.run(train_args(dataset, tmp_path / "run", "--phase", "1", "--steps", "1")) == 0
    full = tmp_path / "run" / "weights.pt"
    shipped = tmp_path / "shipped.pt"
    assert main(["export", str(full), str(shipped), "--note", "test=B1 3.3"]) == 0
    assert shipped.stat().st_size < 0.6 * full.stat().st_size
    from backend.core.weights import read_metadata

    record = read_metadata(shipped)
    assert record["training"]["notes"] == {"test": "B1 3.3"}
    assert record["training"]["steps"] == 1 and record["condition"] == "source+target"
    original, half = load_weights(full).state_dict(), load_weights(shipped).state_dict()
    assert all(torch.allclose(original[k], half[k], rtol=1e-2, atol=1e-3) for k in original)
    assert main(["export", str(full), str(tmp_path / "x.pt"), "--note", "no-equals-sign"]) == 2
    assert "training: --note 'no-equals-sign': use KEY=VALUE" in capsys.readouterr().err


def test_errors_are_exceptions_and_the_command_line_exits_2(dataset, tmp_path, capsys):  # noqa: F811
    from training.__main__ import main

    common = ["train", "--data", str(dataset), "--out", str(tmp_path / "run"), "--steps", "1"]
    assert main([*common, "--phase", "2"]) == 2
    assert (
        capsys.readouterr().err
        == "training: phase 2 starts from phase-1 weights: give --init FILE\n"
    )
    assert main([*common, "--phase", "1", "--resume"]) == 2
    assert f"training: --resume: no checkpoint in {tmp_path / 'run'}" in capsys.readouterr().err
    assert train.run(train_args(dataset, tmp_path / "one", "--phase", "1", "--steps", "1")) == 0
    with pytest.raises(TrainingError, match="is phase 1, not 2"):
        train.run(train_args(dataset, tmp_path / "one", "--phase", "2", "--resume"))
    # Library code raises; only training/__main__.py decides the exit status.
    sources = Path(train.__file__).parent.rglob("*.py")
    assert not [
        p.name for p in sources if "SystemExit" in p.read_text() and p.name != "__main__.py"
    ]
