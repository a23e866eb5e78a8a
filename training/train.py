"""Train PaletteNet.

    python -m training train --phase 1 --data DATASET --out RUN [--steps N] [--batch 12]
    python -m training train --phase 2 --init RUN/weights.pt --data DATASET --out RUN2 ...
    python -m training train ... --resume          continue RUN exactly where it stopped
    python -m training train ... --condition source+target   (see backend/core/model.py)
    torchrun --nproc_per_node 2 -m training train ...   (DistributedDataParallel)

Phase 1 trains the Feature Encoder and Recoloring Decoder with the Euclidean (MSE) loss on
ab. Phase 2 adds the conditional discriminator: the generator's loss is
--l2-weight * MSE + --adv-weight * adversarial, optionally with the encoder frozen. The
discriminator sees real pairs (ground-truth photo, its palette) and three kinds of fake:
(output, target palette), (output, source palette) and (input photo, target palette), so it
learns whether image and palette belong together, not just whether an image looks real.

The run folder holds checkpoint.pt (everything needed to resume), weights.pt (the model with
its metadata record, as the daemon loads it), metrics.csv, and samples/ (PNG grids of
source | target palette | output | ground truth on validation photos).

--workers N assembles batches in N background processes (a GPU outruns one CPU core);
batches stay a pure function of (seed, step, rank), so the result does not depend on N.
--max-minutes ends the run early at a step boundary, saved like a last step, so a run can be
sized to a time budget; the step it reached is recorded and --steps N reproduces it.

run() is the whole recipe; the functions after it are its steps, in the order it calls them.
"""

import csv
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch.nn.parallel import DistributedDataParallel

from backend.core.color import lab_to_rgb, net_to_lab, to_uint8
from backend.core.model import BASES, CONDITIONS, Discriminator, PaletteNet
from backend.core.weights import WeightsError, load_weights, save_weights
from training import TrainingError
from training.dataset import PairDataset, parse_mix, to_network, training_crops

METRIC_FIELDS = [
    "step",
    "phase",
    "loss_l2",
    "loss_adv",
    "loss_d",
    "loss_flat",
    "val_l2",
    "images_per_s",
    "seconds",
]


def add_arguments(parser):
    parser.add_argument("--phase", type=int, choices=[1, 2], required=True)
    parser.add_argument(
        "--condition",
        choices=list(CONDITIONS),
        default="source+target",
        help="what the decoder is given: the target palette (the paper), or source and target",
    )
    parser.add_argument(
        "--base",
        choices=list(BASES),
        default="palette",
        help="what the output is added to: none (the paper), source ab, palette transfer",
    )
    parser.add_argument("--data", type=Path, required=True, help="folder from 'prepare'")
    parser.add_argument("--out", type=Path, required=True, help="run folder")
    parser.add_argument("--init", type=Path, help="phase 2: start from these weights")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out")
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=12, help="per process")
    parser.add_argument("--size", type=int, default=256, help="training crop side, pixels")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--betas", type=float, nargs=2, default=(0.5, 0.999))
    parser.add_argument(
        "--mix",
        default="hue=0.7,local=0.3",  # won on the validation benchmark: docs/MODEL.md
        help="how often each variant kind is drawn, e.g. hue=1 or hue=1,local=1",
    )
    parser.add_argument("--l2-weight", type=float, default=10.0, help="phase 2")
    parser.add_argument("--adv-weight", type=float, default=1.0, help="phase 2")
    parser.add_argument("--freeze-encoder", action="store_true", help="phase 2")
    parser.add_argument(
        "--flat-weight",
        type=float,
        default=0.0,
        help="weight of the flat-fill loss: output ab variation between neighbours where the "
        "input is flat (artwork: a flat fill must come out flat; 0: off)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--val-pairs", type=int, default=2, help="validation pairs per photo")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--workers", type=int, default=0, help="batch-making processes")
    parser.add_argument(
        "--max-minutes", type=float, default=0, help="stop early after this long (0: never)"
    )


# --- the recipe ---------------------------------------------------------------------------
def run(args):
    """Train PaletteNet as the arguments say; returns 0 (errors raise TrainingError)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase == 2 and args.init is None and not args.resume:
        raise TrainingError("phase 2 starts from phase-1 weights: give --init FILE")
    proc = set_up_distributed(args.device)
    train_set, val_batches = load_data(args)
    start = resume_or_init(args)
    model, disc = build_models(args, start, proc)
    opt_g, opt_d = build_optimisers(args, model, disc, start)
    metrics = open_run_folder(args, start.step) if proc.is_main else None
    progress = training_batches(args, train_set, start.step, proc)

    step, val_l2 = start.step, math.nan  # the last step done, the last validation l2
    began, speed = time.time(), Throughput(args.batch * proc.world)
    for step, crops in enumerate(progress, start.step + 1):
        batch = to_device(crops, args.size, proc)
        losses = train_step(model, disc, opt_g, opt_d, batch, args, proc)
        last = step == args.steps or out_of_time(args, began, proc)
        images_per_s = speed.update()
        progress.set_postfix(l2=f"{losses['loss_l2'].item():.4f}", img_s=f"{images_per_s:.1f}")
        if proc.is_main:  # rank 0 validates and writes the run folder
            validating = (step % args.val_every == 0 or last) and bool(val_batches)
            if validating:
                val_l2 = validate(unwrap(model), val_batches, proc.device)
                progress.write(f"step {step}: validation l2 {val_l2:.5f}")
            if (step % args.sample_every == 0 or last) and val_batches:
                sample = args.out / "samples" / f"step_{step:06d}.png"
                save_samples(unwrap(model), val_batches[0], proc.device, sample)
            seconds = time.time() - began
            metrics.write(
                step, args.phase, losses, val_l2 if validating else None, images_per_s, seconds
            )
            if step % args.checkpoint_every == 0 or last:
                save_checkpoint(args, step, model, disc, opt_g, opt_d, val_l2)
        if last:
            break
    progress.close()

    if proc.world > 1:
        end_distributed(args.out, proc, model)
    if proc.is_main:
        metrics.close()
        print(
            f"done: {args.out / 'weights.pt'} after {step} steps"
            + (f", validation l2 {val_l2:.5f}" if not math.isnan(val_l2) else "")
        )
    return 0


# --- set-up -----------------------------------------------------------------------------
@dataclass
class Process:
    """This process: its rank among `world` processes (torchrun), and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, writes the run folder and shows progress."""
        return self.rank == 0

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def memory_format(self):
        return torch.channels_last if self.cuda else torch.contiguous_format

    def autocast(self):
        """Mixed precision on CUDA only: CPU training stays float32 and exact."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda)


def set_up_distributed(device_name) -> Process:
    """This process's rank and device; joins the process group when torchrun started several
    (WORLD_SIZE is set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(rank, world, device)


def load_data(args):
    """-> (the training split, the validation batches: --val-pairs fixed pairs per photo)."""
    try:
        mix = parse_mix(args.mix)
        train_set = PairDataset(args.data, "train", mix)
        val_set = PairDataset(args.data, "validation", mix)
    except (OSError, ValueError, KeyError) as error:
        raise TrainingError(f"cannot read the dataset in {args.data}: {error}") from None
    if len(train_set) == 0:
        raise TrainingError(f"{args.data} has no training photos")
    val_pairs = val_set.fixed_pairs(args.val_pairs) if len(val_set) else []
    val_batches = [
        val_set.make(val_pairs[k : k + 8], args.size) for k in range(0, len(val_pairs), 8)
    ]
    return train_set, val_batches


class Start(NamedTuple):
    """Where a run starts (resume_or_init)."""

    step: int  # steps already done: a resumed run's, else 0
    generator: dict | None  # the generator's state dict to load, None for a fresh network
    source: Path | None  # the file it came from, for messages
    checkpoint: dict | None  # a resumed run's whole checkpoint (discriminator, optimisers)


def resume_or_init(args) -> Start:
    """--resume: the checkpoint in --out; --init: phase-1 weights; else a fresh network.
    The model options (--condition, --base) come with the weights and replace the arguments':
    a run continues the network it starts from."""
    if args.resume:
        path = args.out / "checkpoint.pt"
        if not path.exists():
            raise TrainingError(f"--resume: no checkpoint in {args.out}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if checkpoint["phase"] != args.phase:
            raise TrainingError(f"{path} is phase {checkpoint['phase']}, not {args.phase}")
        generator, options = checkpoint_generator(checkpoint)
        start = Start(checkpoint["step"], generator, path, checkpoint)
    elif args.init is not None:
        generator, options = load_init(args.init)
        start = Start(0, generator, args.init, None)
    else:
        return Start(0, None, None, None)
    args.condition, args.base = options["condition"], options["base"]
    return start


def checkpoint_generator(record: dict) -> tuple[dict, dict]:
    """A checkpoint.pt's generator -> (state dict, the model options it was trained with)."""
    saved = record.get("args", {})
    options = {k: saved.get(k, d) for k, d in (("condition", "target"), ("base", "none"))}
    return record["generator"], options


def load_init(path: Path) -> tuple[dict, dict]:
    """Phase 2's starting point: a weights.pt, or a phase-1 run's checkpoint.pt ->
    (state dict, the model options it was trained with)."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrainingError(f"--init {path}: not readable ({error})") from None
    if isinstance(record, dict) and "generator" in record:
        return checkpoint_generator(record)
    try:
        model = load_weights(path)
    except WeightsError as error:
        raise TrainingError(str(error)) from None
    return model.state_dict(), {"condition": model.condition, "base": model.base}


def build_models(args, start: Start, proc: Process):
    """-> (generator, discriminator or None in phase 1): seeded, loaded from the starting
    point, on the device, wrapped in DistributedDataParallel when there are several
    processes. --freeze-encoder stops the encoder's gradients."""
    torch.manual_seed(args.seed)
    try:
        model = PaletteNet(args.condition, args.base)
    except ValueError as error:
        raise TrainingError(str(error)) from None
    disc = Discriminator() if args.phase == 2 else None
    if start.generator is not None:
        load_generator(model, start.generator, start.source)
    if start.checkpoint is not None and disc is not None:
        disc.load_state_dict(start.checkpoint["discriminator"])
    if args.freeze_encoder:
        model.encoder.requires_grad_(False)

    model.to(proc.device, memory_format=proc.memory_format)
    if disc is not None:
        disc.to(proc.device, memory_format=proc.memory_format)
    if proc.world > 1:
        model = DistributedDataParallel(model)
        disc = DistributedDataParallel(disc) if disc is not None else None
    return model, disc


def load_generator(model, state: dict, path: Path):
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise TrainingError(
            f"{path} does not fit a PaletteNet with --condition {model.condition} "
            "(was it trained with the other condition?)"
        ) from None


def build_optimisers(args, model, disc, start: Start):
    """-> (Adam over the generator's trainable weights, Adam over the discriminator's or
    None); a resumed run's optimiser states are loaded."""
    opt_g = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=tuple(args.betas)
    )
    opt_d = (
        torch.optim.Adam(disc.parameters(), lr=args.lr, betas=tuple(args.betas))
        if disc is not None
        else None
    )
    if start.checkpoint is not None:
        opt_g.load_state_dict(start.checkpoint["opt_g"])
        if opt_d is not None:
            opt_d.load_state_dict(start.checkpoint["opt_d"])
    return opt_g, opt_d


def open_run_folder(args, start: int) -> "Metrics":
    """Makes --out, writes args.json there, and opens metrics.csv."""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "args.json").write_text(json.dumps(vars(args), default=str, indent=1))
    return Metrics(args.out / "metrics.csv", start)


class Metrics:
    """metrics.csv, one row per step. A resumed run first drops the rows past its start: it
    redoes those steps."""

    def __init__(self, path: Path, start: int):
        rows = []
        if start > 0 and path.exists():
            with open(path, newline="") as file:
                rows = [r for r in csv.DictReader(file) if int(r["step"]) <= start]
        self.file = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.file, METRIC_FIELDS)
        self.writer.writeheader()
        self.writer.writerows(rows)

    def write(self, step, phase, losses: dict, val_l2, speed, seconds):
        """One step's row; val_l2 None: not validated at this step."""
        self.writer.writerow(
            {
                "step": step,
                "phase": phase,
                **{name: f"{loss.item():.6f}" for name, loss in losses.items()},
                "val_l2": "" if val_l2 is None else f"{val_l2:.6f}",
                "images_per_s": f"{speed:.2f}",
                "seconds": f"{seconds:.1f}",
            }
        )
        self.file.flush()

    def close(self):
        self.file.close()


# --- batches ------------------------------------------------------------------------------
class StepBatches(torch.utils.data.Dataset):
    """Item k is the crops of step start + k: what a DataLoader's workers assemble."""

    def __init__(self, dataset, start, steps, **batch_args):
        self.dataset, self.start, self.steps, self.batch_args = dataset, start, steps, batch_args

    def __len__(self):
        return max(0, self.steps - self.start)

    def __getitem__(self, k):
        return training_crops(self.dataset, self.start + k, **self.batch_args)


def training_batches(args, train_set, start: int, proc: Process):
    """The crops of steps start + 1 ... --steps, made in --workers processes (or inline),
    behind a progress bar that rank 0 shows. Each step's crops depend only on (seed, step,
    rank)."""
    from tqdm import tqdm

    batches = torch.utils.data.DataLoader(
        StepBatches(train_set, start, args.steps, seed=args.seed, rank=proc.rank, batch=args.batch),
        batch_size=None,
        num_workers=args.workers,
        pin_memory=proc.cuda,
        prefetch_factor=4 if args.workers else None,
    )
    return tqdm(batches, initial=start, total=args.steps, desc=f"phase {args.phase}",
                unit="step", disable=not proc.is_main)  # fmt: skip


def to_device(crops, size, proc: Process):
    """A step's crops -> the network's batch on this process's device."""
    crops = {k: v.to(proc.device, non_blocking=True) for k, v in crops.items()}
    batch = to_network(crops, size)
    batch["source"] = batch["source"].contiguous(memory_format=proc.memory_format)
    return batch


# --- one step -----------------------------------------------------------------------------
def train_step(model, disc, opt_g, opt_d, batch, args, proc: Process) -> dict:
    """One update of the generator, then (phase 2) one of the discriminator on the same
    batch -> the losses, named as metrics.csv's columns."""
    total, loss_l2, loss_adv, loss_flat, ab = generator_loss(
        model, disc, batch, args, proc.autocast
    )
    opt_g.zero_grad(set_to_none=True)
    total.backward()
    opt_g.step()
    loss_d = torch.zeros(())
    if disc is not None:
        loss_d = discriminator_loss(disc, batch, ab, proc.autocast)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
    return {"loss_l2": loss_l2, "loss_adv": loss_adv, "loss_d": loss_d, "loss_flat": loss_flat}


def generator_loss(model, disc, batch, args, autocast):
    """-> (the loss to minimise, its MSE, adversarial and flat-fill parts, the output ab
    detached). Phase 1: the MSE of ab; phase 2: --l2-weight * MSE + --adv-weight *
    adversarial; either plus --flat-weight * flat_variation."""
    with autocast():
        ab = model(batch["source"], batch["target_palette"], batch["source_palette"])
        loss_l2 = F.mse_loss(ab.float(), batch["target_ab"])
        loss_adv = torch.zeros((), device=ab.device)
        if disc is not None:
            fake = torch.cat([batch["source"][:, :1], ab], 1)
            logits = disc(fake, batch["target_palette"]).float()
            loss_adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    total = loss_l2 if disc is None else args.l2_weight * loss_l2 + args.adv_weight * loss_adv
    loss_flat = torch.zeros((), device=ab.device)
    if getattr(args, "flat_weight", 0):
        loss_flat = flat_variation(batch["source"], ab.float())
        total = total + args.flat_weight * loss_flat
    return total, loss_l2, loss_adv, loss_flat.detach(), ab.detach()


FLAT_INPUT = 1e-4  # network units: neighbours closer than this in L, a and b are "flat"


def flat_variation(source, ab):
    """Mean absolute change of the output ab (B, 2, H, W) between neighbouring pixels whose
    input (B, 3, H, W) is flat there (every channel closer than FLAT_INPUT), over those
    pairs, horizontal and vertical averaged; network units. 0 when flat input stays flat.
    Artwork is mostly flat fills, and an output that varies inside one breaks it (issue 17)."""
    total = source.new_zeros(())
    for dim in (2, 3):
        flat = (source.diff(dim=dim).abs().amax(1) < FLAT_INPUT).float()
        change = ab.diff(dim=dim).abs().sum(1)
        total = total + (change * flat).sum() / flat.sum().clamp(min=1)
    return total / 2


def discriminator_loss(disc, batch, ab, autocast):
    """Real: (ground truth, its palette). Fake: (output, target palette), (output, source
    palette), (input, target palette). One forward pass over all four, as DDP expects."""
    lightness = batch["source"][:, :1]
    real = torch.cat([lightness, batch["target_ab"]], 1)
    fake = torch.cat([lightness, ab], 1)
    images = torch.cat([real, fake, fake, batch["source"]])
    palettes = torch.cat(
        [
            batch["target_palette"],
            batch["target_palette"],
            batch["source_palette"],
            batch["target_palette"],
        ]
    )
    with autocast():
        logits = disc(images, palettes).float()
    real_logits, *fake_logits = logits.chunk(4)
    loss_real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    loss_fake = (
        sum(F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)) for f in fake_logits) / 3
    )
    return loss_real + loss_fake


def out_of_time(args, began, proc: Process) -> bool:
    """Whether --max-minutes has passed; with several processes, rank 0's clock decides."""
    if not args.max_minutes:
        return False
    over = torch.tensor(float(time.time() - began > 60 * args.max_minutes), device=proc.device)
    if proc.world > 1:
        dist.broadcast(over, 0)
    return bool(over.item())


class Throughput:
    """Images per second over whole steps (batch making included), smoothed."""

    def __init__(self, images_per_step):
        self.images_per_step, self.smoothed, self.tick = images_per_step, None, time.perf_counter()

    def update(self) -> float:
        """Call once per step; -> the smoothed rate."""
        now = time.perf_counter()
        rate = self.images_per_step / (now - self.tick)
        self.tick = now
        self.smoothed = rate if self.smoothed is None else 0.9 * self.smoothed + 0.1 * rate
        return self.smoothed


# --- validation and samples ----------------------------------------------------------------
@torch.no_grad()
def validate(model, batches, device):
    """Mean squared error of ab over the validation batches."""
    model.eval()
    total, count = 0.0, 0
    for batch in batches:
        ab = generate(model, batch, device)
        total += F.mse_loss(ab.float(), batch["target_ab"].to(device), reduction="sum").item()
        count += batch["target_ab"].numel()
    model.train()
    return total / max(count, 1)


def generate(model, batch, device):
    return model(*(batch[k].to(device) for k in ("source", "target_palette", "source_palette")))


def to_rgb8(net_lab):
    """(3, H, W) network-range LAB -> uint8 RGB (H, W, 3)."""
    return to_uint8(lab_to_rgb(net_to_lab(net_lab.permute(1, 2, 0).float().cpu())).numpy())


@torch.no_grad()
def save_samples(model, batch, device, path: Path):
    """Rows of: source | target palette swatches | output | ground truth."""
    model.eval()
    ab = generate(model, batch, device).cpu()
    model.train()
    rows = []
    for k in range(min(4, len(ab))):
        source = batch["source"][k]
        height, width = source.shape[1:]
        palette = batch["target_palette"][k].reshape(6, 3)
        band = height // 6 + 1
        swatches = palette[:, :, None, None].expand(6, 3, band, width // 3)
        swatches = torch.cat(list(swatches), 1)[:, :height]
        rows.append(
            np.concatenate(
                [
                    to_rgb8(source),
                    to_rgb8(swatches),
                    to_rgb8(torch.cat([source[:1], ab[k]])),
                    to_rgb8(torch.cat([source[:1], batch["target_ab"][k]])),
                ],
                axis=1,
            )
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


# --- checkpoints and the end -----------------------------------------------------------------
def save_checkpoint(args, step, model, disc, opt_g, opt_d, val_l2):
    """checkpoint.pt (everything --resume needs) and weights.pt (the model with its record,
    as the daemon loads it), each replaced whole."""
    state = {
        "step": step,
        "phase": args.phase,
        "args": json.loads(json.dumps(vars(args), default=str)),
        "generator": unwrap(model).state_dict(),
        "opt_g": opt_g.state_dict(),
        "discriminator": unwrap(disc).state_dict() if disc is not None else None,
        "opt_d": opt_d.state_dict() if opt_d is not None else None,
    }
    path = args.out / "checkpoint.pt"
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)
    save_weights(unwrap(model), args.out / "weights.pt", training_summary(args, step, val_l2))


def training_summary(args, step, val_l2):
    """The weight file's training record."""
    meta = json.loads((args.data / "meta.json").read_text())
    return {
        "phase": args.phase,
        "steps": step,
        "batch": args.batch,
        "size": args.size,
        "mix": args.mix,
        "condition": args.condition,
        "base": args.base,
        "lr": args.lr,
        "seed": args.seed,
        "val_l2": val_l2,
        "data": {k: meta[k] for k in ("images", "width", "height", "counts", "layout")},
        "command": " ".join(sys.argv),
    }


def end_distributed(out: Path, proc: Process, model):
    """Each rank writes its weights' digest to rank<N>.sha256 (every rank must end with the
    same weights; the test compares these files), then the process group ends."""
    (out / f"rank{proc.rank}.sha256").write_text(state_digest(model))
    dist.barrier()
    dist.destroy_process_group()


def state_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def unwrap(module):
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return module.module if isinstance(module, DistributedDataParallel) else module
