"""Train PaletteNet.

    python -m training train --phase 1 --data DATASET --out RUN [--steps N] [--batch 12]
    python -m training train --phase 2 --init RUN/weights.pt --data DATASET --out RUN2 ...
    python -m training train ... --resume          continue RUN exactly where it stopped
    python -m training train ... --condition source+target   (see backend/model.py)
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
"""

import csv
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch.nn.parallel import DistributedDataParallel

from backend.core.color import lab_to_rgb, net_to_lab, to_uint8
from backend.core.model import BASES, CONDITIONS, Discriminator, PaletteNet
from backend.core.weights import WeightsError, load_weights, save_weights
from training.dataset import PairDataset, parse_mix, to_network, training_crops

METRIC_FIELDS = [
    "step",
    "phase",
    "loss_l2",
    "loss_adv",
    "loss_d",
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


# --- set-up -----------------------------------------------------------------------------
def distributed_setup(device_name):
    """-> (rank, world size, device). Launched by torchrun when WORLD_SIZE is set."""
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
    return rank, world, device


def unwrap(module):
    return module.module if isinstance(module, DistributedDataParallel) else module


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
        raise SystemExit(f"--init {path}: not readable ({error})") from None
    if isinstance(record, dict) and "generator" in record:
        return checkpoint_generator(record)
    try:
        model = load_weights(path)
    except WeightsError as error:
        raise SystemExit(str(error)) from None
    return model.state_dict(), {"condition": model.condition, "base": model.base}


def load_generator(model, state: dict, path: Path):
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise SystemExit(
            f"{path} does not fit a PaletteNet with --condition {model.condition} "
            "(was it trained with the other condition?)"
        ) from None


class StepBatches(torch.utils.data.Dataset):
    """Item k is the crops of step start + k: what a DataLoader's workers assemble."""

    def __init__(self, dataset, start, steps, **batch_args):
        self.dataset, self.start, self.steps, self.batch_args = dataset, start, steps, batch_args

    def __len__(self):
        return max(0, self.steps - self.start)

    def __getitem__(self, k):
        return training_crops(self.dataset, self.start + k, **self.batch_args)


# --- losses -----------------------------------------------------------------------------
def generator_step(model, disc, batch, args, autocast):
    with autocast():
        ab = model(batch["source"], batch["target_palette"], batch["source_palette"])
        loss_l2 = F.mse_loss(ab.float(), batch["target_ab"])
        loss_adv = torch.zeros((), device=ab.device)
        if disc is not None:
            fake = torch.cat([batch["source"][:, :1], ab], 1)
            logits = disc(fake, batch["target_palette"]).float()
            loss_adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    total = loss_l2 if disc is None else args.l2_weight * loss_l2 + args.adv_weight * loss_adv
    return total, loss_l2, loss_adv, ab.detach()


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


# --- validation and samples ----------------------------------------------------------------
@torch.no_grad()
def validate(model, batches, device):
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


# --- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(path: Path, step, model, disc, opt_g, opt_d, args):
    state = {
        "step": step,
        "phase": args.phase,
        "args": json.loads(json.dumps(vars(args), default=str)),
        "generator": unwrap(model).state_dict(),
        "opt_g": opt_g.state_dict(),
        "discriminator": unwrap(disc).state_dict() if disc is not None else None,
        "opt_d": opt_d.state_dict() if opt_d is not None else None,
    }
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def training_summary(args, step, val_l2):
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


def state_digest(model) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(unwrap(model).state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


# --- the loop ----------------------------------------------------------------------------
def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase == 2 and args.init is None and not args.resume:
        raise SystemExit("phase 2 starts from phase-1 weights: give --init FILE")
    rank, world, device = distributed_setup(args.device)
    is_main = rank == 0
    try:
        mix = parse_mix(args.mix)
        train_set = PairDataset(args.data, "train", mix)
        val_set = PairDataset(args.data, "validation", mix)
    except (OSError, ValueError, KeyError) as error:
        raise SystemExit(f"cannot read the dataset in {args.data}: {error}") from None
    if len(train_set) == 0:
        raise SystemExit(f"{args.data} has no training photos")
    val_pairs = val_set.fixed_pairs(args.val_pairs) if len(val_set) else []
    val_batches = [
        val_set.make(val_pairs[k : k + 8], args.size) for k in range(0, len(val_pairs), 8)
    ]

    use_cuda = device.type == "cuda"
    memory_format = torch.channels_last if use_cuda else torch.contiguous_format

    def autocast():  # mixed precision on CUDA only: CPU training stays float32 and exact
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_cuda)

    checkpoint_path = args.out / "checkpoint.pt"
    start, init_state, init_path, resume_state = 0, None, None, None
    if args.resume:
        if not checkpoint_path.exists():
            raise SystemExit(f"--resume: no checkpoint in {args.out}")
        resume_state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if resume_state["phase"] != args.phase:
            raise SystemExit(
                f"{checkpoint_path} is phase {resume_state['phase']}, not {args.phase}"
            )
        init_state, options = checkpoint_generator(resume_state)
        init_path, start = checkpoint_path, resume_state["step"]
    elif args.init is not None:
        init_state, options = load_init(args.init)
        init_path = args.init
    if init_state is not None:
        # The model options come with the weights: a run continues the network it starts from.
        args.condition, args.base = options["condition"], options["base"]
    torch.manual_seed(args.seed)
    try:
        model = PaletteNet(args.condition, args.base)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    disc = Discriminator() if args.phase == 2 else None
    if init_state is not None:
        load_generator(model, init_state, init_path)
    if resume_state is not None and disc is not None:
        disc.load_state_dict(resume_state["discriminator"])
    if args.freeze_encoder:
        model.encoder.requires_grad_(False)

    model.to(device, memory_format=memory_format)
    if disc is not None:
        disc.to(device, memory_format=memory_format)
    if world > 1:
        model = DistributedDataParallel(model)
        disc = DistributedDataParallel(disc) if disc is not None else None
    opt_g = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=args.lr, betas=tuple(args.betas)
    )
    opt_d = (
        torch.optim.Adam(disc.parameters(), lr=args.lr, betas=tuple(args.betas))
        if disc is not None
        else None
    )
    if resume_state is not None:
        opt_g.load_state_dict(resume_state["opt_g"])
        if opt_d is not None:
            opt_d.load_state_dict(resume_state["opt_d"])

    if is_main:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "args.json").write_text(json.dumps(vars(args), default=str, indent=1))
        metrics_file = open_metrics(args.out / "metrics.csv", start)
        writer = csv.DictWriter(metrics_file, METRIC_FIELDS)

    from tqdm import tqdm

    batches = torch.utils.data.DataLoader(
        StepBatches(
            train_set,
            start,
            args.steps,
            seed=args.seed,
            rank=rank,
            batch=args.batch,
        ),
        batch_size=None,
        num_workers=args.workers,
        pin_memory=use_cuda,
        prefetch_factor=4 if args.workers else None,
    )
    progress = tqdm(
        batches,
        initial=start,
        total=args.steps,
        desc=f"phase {args.phase}",
        unit="step",
        disable=not is_main,
    )
    speed, val_l2, began, done = None, math.nan, time.time(), start
    tick = time.perf_counter()
    for done, crops in enumerate(progress, start + 1):
        crops = {k: v.to(device, non_blocking=True) for k, v in crops.items()}
        batch = to_network(crops, args.size)
        batch["source"] = batch["source"].contiguous(memory_format=memory_format)

        total, loss_l2, loss_adv, ab = generator_step(model, disc, batch, args, autocast)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        loss_d = torch.zeros(())
        if disc is not None:
            loss_d = discriminator_loss(disc, batch, ab, autocast)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()

        last = done == args.steps or out_of_time(args, began, world, device)
        now = time.perf_counter()
        rate = args.batch * world / (now - tick)  # the whole step, batch making included
        tick = now
        speed = rate if speed is None else 0.9 * speed + 0.1 * rate
        progress.set_postfix(l2=f"{loss_l2.item():.4f}", img_s=f"{speed:.1f}")
        validate_now = done % args.val_every == 0 or last
        if is_main and validate_now and val_batches:
            val_l2 = validate(unwrap(model), val_batches, device)
            progress.write(f"step {done}: validation l2 {val_l2:.5f}")
        if is_main and (done % args.sample_every == 0 or last) and val_batches:
            save_samples(
                unwrap(model), val_batches[0], device, args.out / "samples" / f"step_{done:06d}.png"
            )
        if is_main:
            writer.writerow(
                {
                    "step": done,
                    "phase": args.phase,
                    "loss_l2": f"{loss_l2.item():.6f}",
                    "loss_adv": f"{loss_adv.item():.6f}",
                    "loss_d": f"{loss_d.item():.6f}",
                    "val_l2": f"{val_l2:.6f}" if validate_now and val_batches else "",
                    "images_per_s": f"{speed:.2f}",
                    "seconds": f"{time.time() - began:.1f}",
                }
            )
            metrics_file.flush()
            if done % args.checkpoint_every == 0 or last:
                save_checkpoint(checkpoint_path, done, model, disc, opt_g, opt_d, args)
                save_weights(
                    unwrap(model), args.out / "weights.pt", training_summary(args, done, val_l2)
                )
        if last:
            break
    progress.close()

    if world > 1:
        # Every rank must end with the same weights; the test compares these files.
        (args.out / f"rank{rank}.sha256").write_text(state_digest(model))
        dist.barrier()
        dist.destroy_process_group()
    if is_main:
        metrics_file.close()
        print(
            f"done: {args.out / 'weights.pt'} after {done} steps"
            + (f", validation l2 {val_l2:.5f}" if not math.isnan(val_l2) else "")
        )
    return 0


def out_of_time(args, began, world, device) -> bool:
    """Whether --max-minutes has passed; with several processes, rank 0's clock decides."""
    if not args.max_minutes:
        return False
    over = torch.tensor(float(time.time() - began > 60 * args.max_minutes), device=device)
    if world > 1:
        dist.broadcast(over, 0)
    return bool(over.item())


def open_metrics(path: Path, start: int):
    """Append to metrics.csv, first dropping rows past `start` (a resumed run redoes them)."""
    rows = []
    if start > 0 and path.exists():
        with open(path, newline="") as file:
            rows = [r for r in csv.DictReader(file) if int(r["step"]) <= start]
    file = open(path, "w", newline="")
    writer = csv.DictWriter(file, METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    return file
