"""Speed on this machine, side by side in one run (prints figures).

    python benchmarks/speed.py [--predict-runs 3] [--train-batches 20] [--seed-batches 3]

1. ``predict``: seconds per scan for a 320 x 320 x Z scan (la_003, 130 slices, from the full data
   set when present (:func:`lasegtut.paths.full_data_dir`), else the bundled la_014), end to end
   (read, preprocess, segment, write), vs the seed course's loop: one slice at a time through the
   seed U-Net at 256 x 256.
2. Training throughput, slices/s: the ``cpu`` profile (memory-mapped cache, augmentation in its
   workers; slice size, channels and batch as :data:`lasegtut.training.PROFILES` says, printed
   with the figure) vs a faithful re-implementation of the seed's loop (one float64 ``.npy`` file
   per slice, imgaug per sample at 256 px, the seed U-Net, batch 8, no workers).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lasegtut.augment import Augmenter
from lasegtut.data import BUNDLED_SAMPLE, load_case
from lasegtut.inference import load_model, predict_file
from lasegtut.losses import DiceBCELoss
from lasegtut.model import UNet, UNetConfig
from lasegtut.paths import full_data_dir
from lasegtut.preprocess import preprocess_mask, preprocess_volume, write_cache
from lasegtut.training import PROFILES, datamodule

FULL = full_data_dir()


def seed_predict(image: np.ndarray, model: UNet) -> np.ndarray:
    """The seed course's inference: every slice alone through the seed network at 256 px."""
    slices = preprocess_volume(image)
    out = np.empty(slices.shape, np.uint8)
    with torch.no_grad():
        for z in range(len(slices)):
            x = torch.tensor(slices[z]).unsqueeze(0).unsqueeze(0).float()
            out[z] = (torch.sigmoid(model(x))[0, 0] > 0.5).numpy()
    return out


def bench_predict(runs: int) -> None:
    root, cid = (FULL, "la_003") if FULL is not None else (BUNDLED_SAMPLE, "la_014")
    scan = root / "imagesTr" / f"{cid}.nii.gz"
    case = load_case(root, cid)
    print(f"predict on {cid} {case.image.shape}:")
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        load_model()  # warm the file cache
        for i in range(runs):
            t0 = time.perf_counter()
            predict_file(scan, Path(tmp) / f"m{i}.nii.gz")
            times.append(time.perf_counter() - t0)
    ours = float(np.median(times))
    print(f"  lasegtut predict (end to end): median {ours:.2f} s over {runs} runs {['%.2f' % t for t in times]}")
    seed_net = UNet(UNetConfig.seed()).eval()
    t0 = time.perf_counter()
    seed_predict(case.image, seed_net)
    seed = time.perf_counter() - t0
    print(f"  seed per-slice loop, seed U-Net (network only, no file I/O): {seed:.2f} s")
    print(f"  speed-up: {seed / ours:.1f}x")


def bench_train(batches: int, seed_batches: int) -> None:
    data = FULL or BUNDLED_SAMPLE
    prof = PROFILES["cpu"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        write_cache(data, cache, cases=["la_009", "la_014", "la_020"], border=prof.border, progress=False)
        dm = datamodule(prof, cache, ["la_009", "la_014", "la_020"], ["la_009"])
        dm.setup()
        net = UNet(prof.model_config())
        def forever():
            while True:
                yield from dm.train_dataloader()

        rate = _train_rate(net, forever(), batches)
        print(f"training, cpu profile ({prof.size} px, {prof.model_config().in_channels} channels, "
              f"slices across axis {prof.slice_axis}, "
              f"batch {prof.batch_size}, {prof.num_workers} worker): {rate:.1f} slices/s")

        # the seed's format: one float64 .npy per slice, image and mask
        seed_dir = Path(tmp) / "seed"
        seed_dir.mkdir()
        case = load_case(data, "la_014")
        img, msk = preprocess_volume(case.image), preprocess_mask(case.label)
        t0 = time.perf_counter()
        for z in range(len(img)):
            np.save(seed_dir / f"{z}_img.npy", img[z].astype(np.float64))
            np.save(seed_dir / f"{z}_mask.npy", msk[z].astype(np.float64))
        print(f"  (writing the seed's per-slice files: {time.perf_counter() - t0:.1f} s for {len(img)} slices)")
        aug = Augmenter()
        rng = np.random.default_rng(0)

        def seed_batches_iter():
            while True:
                xs, ys = [], []
                for _ in range(8):
                    z = int(rng.integers(len(img)))
                    a = np.load(seed_dir / f"{z}_img.npy")
                    m = np.load(seed_dir / f"{z}_mask.npy")
                    a, m = aug(a.astype(np.float32), m.astype(np.uint8), int(rng.integers(2**31)))
                    xs.append(torch.tensor(a)[None])
                    ys.append(torch.tensor(m)[None])
                yield torch.stack(xs), torch.stack(ys), None

        seed_rate = _train_rate(UNet(UNetConfig.seed()), seed_batches_iter(), seed_batches)
        print(f"training, seed loop (256 px, batch 8, seed U-Net, no workers): {seed_rate:.2f} slices/s")
        print(f"  speed-up: {rate / seed_rate:.1f}x")


def _train_rate(net: UNet, batches, n: int) -> float:
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = DiceBCELoss()
    net.train()
    seen, t0 = 0, None
    for i in range(n + 1):
        x, y, _ = next(batches)
        opt.zero_grad()
        loss = loss_fn(net(x), y.float())
        loss.backward()
        opt.step()
        if i == 0:
            t0 = time.perf_counter()  # the first batch pays for warm-up
        else:
            seen += len(x)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predict-runs", type=int, default=3)
    ap.add_argument("--train-batches", type=int, default=20)
    ap.add_argument("--seed-batches", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    bench_predict(args.predict_runs)
    bench_train(args.train_batches, args.seed_batches)


if __name__ == "__main__":
    main()
