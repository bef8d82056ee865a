"""Training the U-Net with PyTorch Lightning.

One function, :func:`train`, runs the whole recipe: cache the data set, split it by subject,
build the model from a *profile*, fit with checkpoints and logs, and export the best weights
as a small ``model.pt`` that :mod:`lasegtut.inference` loads.

Profiles (:data:`PROFILES` holds every number; ``print(PROFILES["cpu"])`` shows them, and the
shipped model's results are in ``lasegtut/weights/MODEL_CARD.md``):

- ``ci``: a tiny network on small slices for a few batches: proves the mechanics in a minute on
  any CPU; the Dice it reaches means nothing.
- ``cpu``: the recipe of the shipped model: a U-Net with batch norm on a tight in-plane window at
  full resolution (its ``border``, which holds the atrium of every MSD scan with room to spare),
  in slices across array axis 0 (coronal sections of the MSD heart scans, ``slice_axis=0``), given
  as 2.5D input (each slice with ``context`` neighbours per side as extra channels), the seed
  augmentation with a random gamma (:data:`lasegtut.augment.RECIPE_AUGMENTATION`), Dice + BCE,
  Adam with a cosine schedule; under an hour on a 2-core laptop.
- ``gpu``: the ``cpu`` recipe's network and input geometry, with the candidate augmentation robust to
  other scanners (:data:`lasegtut.augment.ROBUST_AUGMENTATION`: noise, blur, coarser slices, brightness,
  contrast, a wide gamma; issue 24, for the next GPU run) (so its model runs in the same time on
  a laptop), trained as a GPU allows: many more epochs, larger batches, bf16 mixed precision
  (fp16 where the GPU has no bf16) and channels-last, the training slices kept on the GPU and
  augmented there (:class:`lasegtut.dataset.DeviceSlices`, :func:`lasegtut.augment.augment_batch`),
  validation only every ``val_every`` epochs to watch, and the *last* epoch's weights exported (no
  epoch chosen by looking at the validation cases, as nnU-Net does). ``train(max_minutes=...)``
  shortens the run to a time budget. Several GPUs are used through Lightning's own strategies
  (``devices="auto"``: DDP for several; ``train(devices=N, strategy="ddp")`` or ``lasegtut train
  --devices N --strategy ddp`` for any profile). Under DDP each process trains on its share of
  the slices, the validation voxel counts are summed over the processes before the Dice
  (:meth:`LitSegmenter._gathered_counts`), and only the first process writes the cache, the
  split, checkpoints, logs and ``model.pt`` (:func:`is_primary_process`). Run for real on a CPU
  with 2 processes (``tests/test_ddp.py``); not on several GPUs or nodes.

Outputs in ``out/``: ``checkpoints/best-*.ckpt`` and ``checkpoints/last.ckpt`` (an interrupted
run resumes from ``last.ckpt``), ``logs/version_N/metrics.csv`` (CSV, one version per run or resume), ``tb/`` (TensorBoard,
with overlay images in the course's display convention, direction letters included),
``split.json`` and ``model.pt``.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
import torch

from . import __version__
from .augment import RECIPE_AUGMENTATION, ROBUST_AUGMENTATION, AugmentConfig
from .data import MSD_SIZE, VALIDATION_CASES, list_cases, resolve_data_dir
from .dataset import LADataModule
from .errors import LasegError
from .geometry import SLICING_FIELDS, Geometry
from .losses import DiceBCELoss
from .inference import load_model
from .model import UNet, UNetConfig
from .pack import unpack
from .preprocess import DEFAULT_BORDER, load_index, write_cache, write_json_atomic
from .safeio import load_torch_file, make_output_dir
from .split import describe_folds, fold_split, kfold_cases, split_cases
from .weightsfile import export_weights, parse_weights

#: The input geometry a :class:`LitSegmenter` gets for any field it is not given.
_DEFAULT_GEOMETRY = Geometry()


@dataclass(frozen=True)
class Profile:
    """A training recipe. Sizes in pixels; ``size=None`` trains on the full crop (256 x 256 for
    a 320 x 320 scan with the default ``border`` of 32 voxels removed per side).

    ``context``/``context_stride``: 2.5D input, each slice with ``context`` neighbours per side
    ``context_stride`` slices apart as extra channels (0: plain slices).
    ``augment_config``: the augmentation (None: the seed course's pipeline).
    ``slice_axis``: the array axis of the ``(x, y, z)`` scan the 2D slices cut across (2: the
    file's own slices; 0: see :func:`lasegtut.preprocess.reslice`).
    ``on_device``: gather and augment training batches on the training device (the GPU path of
    :class:`lasegtut.dataset.LADataModule`); ``channels_last``: that memory layout for the network.
    ``select``: which weights are exported, ``"best"`` (highest validation Dice) or ``"last"``.
    ``val_every``: validate every this many epochs.
    """

    name: str
    widths: tuple[int, ...]
    norm: str = "batch"
    size: int | None = 128
    batch_size: int = 16
    epochs: int = 20
    lr: float = 2e-3
    bce_weight: float = 0.5
    empty_fraction: float = 1.0
    augment: bool = True
    num_workers: int = 0
    precision: str = "32-true"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    log_every_n_steps: int = 5
    seed: int = 42
    context: int = 0
    context_stride: int = 1
    augment_config: AugmentConfig | None = None
    border: int = DEFAULT_BORDER
    slice_axis: int = 2
    on_device: bool = False
    channels_last: bool = False
    select: str = "best"
    val_every: int = 1

    @property
    def input_size(self) -> int:
        """Slice size the network sees, pixels: ``size``, or the crop of a 320 x 320 MSD scan."""
        return self.size or MSD_SIZE - 2 * self.border

    def model_config(self) -> UNetConfig:
        """The network this profile trains (``2 * context + 1`` input channels)."""
        return UNetConfig(widths=self.widths, norm=self.norm, in_channels=2 * self.context + 1)  # type: ignore[arg-type]

    def geometry(self) -> Geometry:
        """How a scan is turned into network input for a model trained with this profile. Its
        ``spacing_mm`` is the MSD's: :func:`train` replaces it with its training cases' mean."""
        return Geometry(input_size=self.input_size, border=self.border, context=self.context,
                        context_stride=self.context_stride, slice_axis=self.slice_axis)


def datamodule(prof: Profile, cache: str | os.PathLike, train_cases: Sequence[str],
               val_cases: Sequence[str]) -> LADataModule:
    """The :class:`lasegtut.dataset.LADataModule` a profile trains on (one place, so that
    training and the speed benchmark feed the network the same slices)."""
    return LADataModule(cache, train_cases, val_cases, batch_size=prof.batch_size,
                        num_workers=prof.num_workers, size=prof.size, augment=prof.augment,
                        empty_fraction=prof.empty_fraction, seed=prof.seed, context=prof.context,
                        context_stride=prof.context_stride, augment_config=prof.augment_config,
                        slice_axis=prof.slice_axis, on_device=prof.on_device)


PROFILES: dict[str, Profile] = {
    "ci": Profile("ci", widths=(8, 16, 32, 64), size=64, batch_size=8, epochs=2, lr=3e-3,
                  accelerator="cpu", devices=1, limit_train_batches=12, limit_val_batches=6,
                  empty_fraction=0.2, log_every_n_steps=2, context=1, context_stride=2),
    "cpu": Profile("cpu", widths=(16, 32, 64, 128, 256), size=160, border=80, batch_size=16, epochs=22,
                   lr=1e-3, empty_fraction=0.3, num_workers=1, accelerator="cpu", devices=1,
                   context=2, context_stride=2, augment_config=RECIPE_AUGMENTATION,
                   slice_axis=0),
    "gpu": Profile("gpu", widths=(16, 32, 64, 128, 256), size=160, border=80, batch_size=64, epochs=400,
                   lr=2e-3, empty_fraction=0.3, num_workers=0, precision="bf16-mixed",
                   accelerator="gpu", devices="auto", strategy="auto", context=2, context_stride=2,
                   augment_config=ROBUST_AUGMENTATION, slice_axis=0, on_device=True,
                   channels_last=True, select="last", val_every=10, log_every_n_steps=20),
}


def get_profile(name: str) -> Profile:
    """The profile called ``name``; LasegError for an unknown one."""
    try:
        return PROFILES[name]
    except KeyError:
        raise LasegError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}") from None


class LitSegmenter(pl.LightningModule):
    """The U-Net, its loss and its metric for Lightning.

    Validation Dice is computed in 3D per case (all slices of a validation case pooled) at the
    training resolution, then averaged over cases: ``val_dice``. Under DDP the voxel counts of
    all processes are summed first, and each validation slice is seen by exactly one process
    (:meth:`lasegtut.dataset.LADataModule.val_dataloader`), so it is the Dice of one process
    seeing every validation slice once.
    """

    def __init__(self, model_config: dict | None = None, lr: float = 2e-3, epochs: int = 20,
                 bce_weight: float = 0.5, n_overlays: int = 4, input_size: int = _DEFAULT_GEOMETRY.input_size,
                 context: int = _DEFAULT_GEOMETRY.context, context_stride: int = _DEFAULT_GEOMETRY.context_stride,
                 border: int = _DEFAULT_GEOMETRY.border, slice_axis: int = _DEFAULT_GEOMETRY.slice_axis,
                 spacing_mm: Sequence[float] = _DEFAULT_GEOMETRY.spacing_mm) -> None:
        """The geometry fields (``input_size`` ... ``spacing_mm``, see :class:`Geometry`) are
        separate hyper-parameters so that a checkpoint stores them as plain numbers; build them
        with ``**geometry.to_dict()`` and read them back with :attr:`geometry`."""
        super().__init__()
        self.save_hyperparameters()
        self.model = UNet(UNetConfig.from_dict(model_config) if model_config else UNetConfig())
        self.loss_fn = DiceBCELoss(bce_weight=bce_weight)
        self._counts: dict[int, np.ndarray] = {}
        self._overlays: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    @property
    def geometry(self) -> Geometry:
        """The input geometry this module trains (from its hyper-parameters)."""
        return Geometry.from_dict(self.hparams)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        loss = self.loss_fn(self(x), y.float())
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y, case = batch
        logits = self(x)
        self.log("val_loss", self.loss_fn(logits, y.float()), on_epoch=True, batch_size=len(x), sync_dist=True)
        pred = logits > 0
        yb = y.bool()
        for c in case.unique().tolist():
            sel = case == c
            p, t = pred[sel], yb[sel]
            counts = np.array([(p & t).sum().item(), (p & ~t).sum().item(), (~p & t).sum().item()])
            self._counts[c] = self._counts.get(c, 0) + counts
        if len(self._overlays) < self.hparams.n_overlays:
            for i in range(len(x)):
                if yb[i].sum() > 50 and len(self._overlays) < self.hparams.n_overlays and i % 4 == 0:
                    mid = x.shape[1] // 2  # the slice itself (the others are its 2.5D neighbours)
                    self._overlays.append((x[i, mid].float().cpu().numpy(), yb[i, 0].cpu().numpy(),
                                           pred[i, 0].cpu().numpy()))

    def _gathered_counts(self) -> dict[int, np.ndarray]:
        """The per-case (tp, fp, fn) voxel counts of every process, summed: under DDP each process
        validates its share of the slices, and a case's slices may be split between processes, so
        the counts (not per-process Dice values) are gathered before the Dice of each case."""
        trainer = getattr(self, "_trainer", None)
        if trainer is None or trainer.world_size <= 1:
            return self._counts
        n = len(getattr(trainer.datamodule, "val_cases", [])) or (max(self._counts, default=-1) + 1)
        n = int(self.all_gather(torch.tensor(n, device=self.device)).max())
        table = torch.zeros(n, 4, dtype=torch.float64, device=self.device)  # tp, fp, fn, seen
        for c, counts in self._counts.items():
            table[c, :3] = torch.as_tensor(counts, dtype=torch.float64)
            table[c, 3] = 1
        total = self.all_gather(table).reshape(-1, n, 4).sum(0).cpu().numpy()
        return {c: total[c, :3] for c in range(n) if total[c, 3] > 0}

    def on_validation_epoch_end(self) -> None:
        dices = [2 * tp / max(2 * tp + fp + fn, 1) for tp, fp, fn in self._gathered_counts().values()]
        if dices:  # the same value in every process: sync_dist's mean of it changes nothing
            self.log("val_dice", float(np.mean(dices)), prog_bar=True, sync_dist=True)
        self._log_overlays()
        self._counts, self._overlays = {}, []

    def _log_overlays(self) -> None:
        if not self._overlays or self.trainer.sanity_checking:
            return
        from pytorch_lightning.loggers import TensorBoardLogger

        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                fig = overlay_figure(self._overlays, self.hparams.slice_axis)
                logger.experiment.add_figure("val/overlay_label_orange_pred_teal", fig, self.current_epoch)

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(self.hparams.epochs, 1))
        return {"optimizer": opt, "lr_scheduler": sched}


def overlay_figure(overlays: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], slice_axis: int,
                   axcodes: Sequence[str] | None = None):
    """The validation overlays TensorBoard shows: each ``(image, label, prediction)`` slice of the network's
    input (the layout of :func:`lasegtut.preprocess.reslice` across array ``slice_axis``) laid out in the
    course's display convention by :func:`lasegtut.orientation.display_2d`, with its direction letters,
    label outlined in orange and prediction dashed in teal (:func:`lasegtut.plots.overlay`), as in the
    notebooks. ``axcodes``: where the scans' array axes point (default: the MSD heart scans',
    :data:`lasegtut.orientation.MSD_HEART_AXCODES`). A matplotlib ``Figure`` not registered with pyplot."""
    from matplotlib.figure import Figure

    from .orientation import MSD_HEART_AXCODES, display_2d
    from .plots import overlay

    codes = MSD_HEART_AXCODES if axcodes is None else axcodes
    fig = Figure(figsize=(2.4 * max(len(overlays), 1), 2.6), dpi=100)
    axes = fig.subplots(1, max(len(overlays), 1), squeeze=False)[0]
    for ax, (img, lab, pred) in zip(axes, overlays):
        shown, letters = display_2d(img, slice_axis, codes)
        overlay(ax, shown, display_2d(np.asarray(lab, bool), slice_axis, codes)[0],
                display_2d(np.asarray(pred, bool), slice_axis, codes)[0], letters=letters)
    fig.tight_layout()
    return fig


@dataclass
class TrainResult:
    """What :func:`train` produced (paths, best validation Dice, wall time in seconds)."""

    out: Path
    weights: Path
    best_checkpoint: Path | None
    best_val_dice: float | None
    epochs: int
    seconds: float
    train_cases: list[str] = field(default_factory=list)
    val_cases: list[str] = field(default_factory=list)
    #: the folds of a cross-validation run (:func:`lasegtut.split.kfold_cases`) and this run's fold
    folds: list[list[str]] | None = None
    fold: int | None = None

    def describe(self) -> str:
        dice = "n/a" if self.best_val_dice is None else f"{self.best_val_dice:.4f}"
        text = (f"trained {self.epochs} epochs in {self.seconds / 60:.1f} min on {len(self.train_cases)} cases; "
                f"best validation Dice {dice} ({', '.join(self.val_cases)}); weights: {self.weights}")
        if self.folds is not None:
            text = describe_folds(self.folds, self.fold) + "\n" + text
        return text


def choose_split(cache: str | os.PathLike, folds: int | None = None,
                 fold: int | None = None) -> tuple[list[str], list[str]]:
    """Subject-level split of the cached cases.

    The bundled cases (la_009, la_014, la_020) are the fixed validation set whenever the data
    set holds other cases to train on; with only the bundled sample present, one case is held
    out (this is only good for showing the mechanics).

    With ``folds`` (and ``fold``, 0-based): run ``fold`` of a grouped ``folds``-fold
    cross-validation over *every* cached case, the bundled ones included
    (:func:`lasegtut.split.fold_split`: identical images in one fold, the same folds on every
    machine), as nnU-Net's 5-fold cross-validation uses every labelled case.
    """
    index = load_index(cache)
    hashes = {c: e["image_sha1"] for c, e in index["cases"].items()}
    ids = sorted(hashes)
    if folds is not None:
        train, val, _ = fold_split(ids, hashes, folds, 0 if fold is None else fold)
        return train, val
    if set(VALIDATION_CASES) <= set(ids) and len(ids) > len(VALIDATION_CASES):
        return split_cases(ids, hashes, val_cases=VALIDATION_CASES)
    if len(ids) < 2:
        raise LasegError("at least two cases are needed to train and validate")
    return split_cases(ids, hashes, val_fraction=1 / 3, seed=0)


def is_primary_process() -> bool:
    """False in the extra processes of a multi-process (DDP) run: Lightning's launcher starts them
    by running the same command again with ``LOCAL_RANK`` / ``NODE_RANK`` set, and they must not
    write what the first process writes (cache, split, weights, the command's report)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def available_cpus() -> int:
    """CPU cores this process may use (the affinity mask where the OS has one; Colab: 2)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def resolve_precision(precision: str, accelerator: str) -> str:
    """The profile's precision, or ``"16-mixed"`` for ``"bf16-mixed"`` on a GPU without native
    bfloat16 (e.g. Colab's T4), where bf16 would be emulated and slow."""
    if precision == "bf16-mixed" and accelerator == "gpu" and torch.cuda.is_available():
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no emulation to rule out
            native = torch.cuda.is_bf16_supported()
        return precision if native else "16-mixed"
    return precision


class TimeBudget(pl.Callback):
    """Fit a run into ``minutes`` of training.

    From epoch ``plan_after`` on, at the end of every epoch, the time an epoch takes once warmed
    up (the mean over the epochs after the first ``warmup``, which pay for start-up and cuDNN's
    kernel search; validation epochs included) gives the number of epochs that still fit, and
    the run (and its cosine schedule) is shortened to it. It only ever shortens a run, so the
    learning rate still ends near 0 at the last epoch. (Planning only once, after a few epochs,
    overran a 4.5-minute budget by a third on a GPU shared by three runs: later epochs were
    slower than the first ones, and validation epochs cost more.) Epochs are counted from the
    start of this fit, so a run resumed from ``last.ckpt`` gets its own warm-up and budget.
    """

    def __init__(self, minutes: float, plan_after: int = 5, warmup: int = 2) -> None:
        if not minutes > 0:
            raise LasegError(f"the time budget must be a positive number of minutes, not {minutes}")
        self.seconds, self.plan_after, self.warmup = 60 * minutes, plan_after, warmup
        self.t0 = self.t_warm = 0.0
        self.first = 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.t0 = time.perf_counter()
        self.first = trainer.current_epoch  # past 0 in a resumed run

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # runs before the epoch's validation: measuring from one epoch end to the next counts it
        end = trainer.current_epoch + 1  # epochs of the whole run so far
        done = end - self.first  # epochs of this fit
        now = time.perf_counter()
        if done == self.warmup:
            self.t_warm = now
        if done < self.plan_after:
            return
        per_epoch = (now - self.t_warm) / (done - self.warmup)
        fits = max(end + int(max(self.seconds - (now - self.t0), 0) / per_epoch), end + 1)
        if fits < trainer.fit_loop.max_epochs:
            trainer.fit_loop.max_epochs = fits
            for cfg in trainer.lr_scheduler_configs:
                if hasattr(cfg.scheduler, "T_max"):
                    cfg.scheduler.T_max = fits
            module.hparams.epochs = fits


def train(data: str | os.PathLike | None = None, profile: str | Profile = "cpu",
          out: str | os.PathLike = "runs", *, max_epochs: int | None = None, resume: bool = True,
          cache: str | os.PathLike | None = None, progress: bool = True,
          init: str | os.PathLike | None = None, pack: str | os.PathLike | None = None,
          max_minutes: float | None = None, folds: int | None = None, fold: int | None = None,
          **overrides: Any) -> TrainResult:
    """Train a U-Net and export ``out/model.pt``.

    Args:
        data: MSD task folder (None: ``$LASEG_DATA_DIR`` or the bundled sample).
        profile: ``"ci"``, ``"cpu"``, ``"gpu"`` or a :class:`Profile`.
        out: folder for checkpoints, logs and the exported weights.
        max_epochs: override the profile's number of epochs.
        resume: continue from ``out/checkpoints/last.ckpt`` if it exists.
        cache: preprocessing cache folder (default ``out/cache``).
        init: start from these weights (``model.pt`` or a checkpoint) instead of random ones,
            e.g. to fine-tune the shipped model; the network must have the profile's shape.
        pack: a training pack (:mod:`lasegtut.pack`) whose cases are added to the cache; with
            ``data=None`` the bundled sample then provides the validation cases.
        max_minutes: a time budget for the fit: the run is shortened to fit it (:class:`TimeBudget`).
        folds, fold: train run ``fold`` (0-based) of a grouped ``folds``-fold cross-validation
            over every case at hand (``data``'s and the pack's, the bundled validation cases
            included): :func:`choose_split`. The folds are written to ``out/split.json``. Give
            both, or neither.
        overrides: any other :class:`Profile` field, e.g. ``limit_train_batches=5``.
    """
    prof = get_profile(profile) if isinstance(profile, str) else profile
    if max_epochs is not None:
        overrides["epochs"] = max_epochs
    prof = replace(prof, **overrides) if overrides else prof
    if not (isinstance(prof.epochs, int) and prof.epochs >= 1):
        raise LasegError(f"the number of epochs must be a whole number >= 1, not {prof.epochs}")
    if not (isinstance(prof.lr, (int, float)) and np.isfinite(prof.lr) and prof.lr >= 0):
        raise LasegError(f"the learning rate must be a number >= 0, not {prof.lr}")
    if prof.accelerator == "gpu" and not torch.cuda.is_available():
        raise LasegError(f"the {prof.name} profile needs a CUDA GPU; use --profile cpu on this machine")
    budget = TimeBudget(max_minutes) if max_minutes is not None else None
    if (folds is None) != (fold is None):
        raise LasegError("give both --folds N and --fold K (K from 0 to N - 1) for a cross-validation run, or neither")
    root = resolve_data_dir(data)
    known = list_cases(root)  # a broken dataset.json is refused before anything is written
    if folds is not None:  # before any work: enough subjects for the folds, a fold that exists
        _check_folds(known, pack, folds, fold)
    model_config = prof.model_config().to_dict()
    start = _load_init(init, prof) if init is not None else None  # before any work, like every check
    out = Path(out)
    ckpt_dir = out / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    resume = resume and last.is_file()
    if resume:
        _check_resume(last, model_config, prof)
    cache = Path(cache) if cache else out / "cache"
    if (cache / "index.json").exists():
        load_index(cache)
    primary = is_primary_process()  # the other DDP processes find the cache and split written
    if primary:
        make_output_dir(out)
        if pack is not None:
            unpack(pack, cache, border=prof.border)
        write_cache(root, cache, border=prof.border, progress=progress)
    train_cases, val_cases = choose_split(cache, folds, fold)
    split_info = {"train": train_cases, "val": val_cases, "data": str(root), "pack": str(pack) if pack else None}
    if folds is not None:
        index = load_index(cache)["cases"]
        split_info.update(folds=folds, fold=fold,
                          fold_cases=kfold_cases(sorted(index), {c: e["image_sha1"] for c, e in index.items()}, folds))
    if primary:
        write_json_atomic(out / "split.json", split_info)
    if folds is not None and progress and primary:  # the folds before a long run, not only after it
        print(describe_folds(split_info["fold_cases"], fold), flush=True)

    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    pl.seed_everything(prof.seed, workers=True, verbose=False)
    dm = datamodule(replace(prof, num_workers=min(prof.num_workers, max(available_cpus() - 1, 0))),
                    cache, train_cases, val_cases)
    cached = load_index(cache)["cases"]
    spacing = [round(float(np.mean([cached[c]["spacing_mm"][i] for c in train_cases])), 4) for i in range(3)]
    module = LitSegmenter(model_config, lr=prof.lr, epochs=prof.epochs, bce_weight=prof.bce_weight,
                          **prof.geometry().with_spacing(spacing).to_dict())
    if start is not None:
        module.model.load_state_dict(start.state_dict())
    if prof.channels_last:
        module = module.to(memory_format=torch.channels_last)
    best_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="best-{epoch:02d}-{val_dice:.4f}",
                              monitor="val_dice", mode="max", save_top_k=1)
    # Lightning 2.6's save_last only writes last.ckpt when a new best was saved, so an interrupted
    # run would resume from the best epoch, not the last: a callback of its own saves every epoch.
    last_cb = ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, monitor=None,
                              enable_version_counter=False)
    callbacks = [best_cb, last_cb, LearningRateMonitor()] + ([budget] if budget else [])
    # a new version_N per run: a resumed run appends a folder instead of erasing the old logs
    loggers = [CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tb")]
    trainer = pl.Trainer(
        max_epochs=prof.epochs, accelerator=prof.accelerator, devices=prof.devices,
        strategy=prof.strategy, precision=resolve_precision(prof.precision, prof.accelerator),
        callbacks=callbacks, logger=loggers, default_root_dir=out, log_every_n_steps=prof.log_every_n_steps,
        limit_train_batches=prof.limit_train_batches, limit_val_batches=prof.limit_val_batches,
        # at least one validation, also in a run shorter than val_every (e.g. notebook 05's quick run)
        check_val_every_n_epoch=max(1, min(prof.val_every, prof.epochs)), benchmark=prof.accelerator == "gpu",
        enable_progress_bar=progress, num_sanity_val_steps=0, enable_model_summary=progress,
    )
    t0 = time.perf_counter()
    # weights_only=True: Lightning resumes with torch.load(weights_only=True), whatever the torch
    # default or TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD say; _check_resume has read the file that way already
    trainer.fit(module, datamodule=dm, ckpt_path=str(last) if resume else None, weights_only=True)
    seconds = time.perf_counter() - t0
    best_path = Path(best_cb.best_model_path) if best_cb.best_model_path else None
    best_score = float(best_cb.best_model_score) if best_cb.best_model_score is not None else None
    if prof.select == "best" and best_path and best_path.exists():
        module = LitSegmenter.load_from_checkpoint(best_path, map_location="cpu", weights_only=True)
    last_dice = trainer.callback_metrics.get("val_dice")
    epochs = int(trainer.current_epoch)
    meta = {"profile": prof.name, "train_cases": ",".join(train_cases), "val_cases": ",".join(val_cases),
            "cv_fold": f"{fold} of {folds}" if folds is not None else "none",
            "epochs": epochs, "selected": prof.select, "best_val_dice_train_res": best_score or -1.0,
            "last_val_dice_train_res": float(last_dice) if last_dice is not None else -1.0,
            "train_seconds": round(seconds, 1), "train_slices": len(dm.train_set),
            "precision": trainer.precision, "device": _device_name(prof.accelerator),
            "processes": trainer.world_size,
            "lasegtut_version": __version__, "torch_version": str(torch.__version__)}
    module = module.float().to(memory_format=torch.contiguous_format)
    weights = out / "model.pt"
    if trainer.is_global_zero:  # one weights file, written by one process
        export_weights(module.model, module.geometry, weights, meta=meta)
    return TrainResult(out, weights, best_path, best_score, epochs, seconds, train_cases, val_cases,
                       split_info.get("fold_cases"), fold)


def _check_folds(cases: Sequence[str], pack: str | os.PathLike | None, folds: int, fold: int) -> None:
    """Refuse a cross-validation that cannot run, before any work: fewer subjects at hand (``cases``
    and the pack's, identical images counted once where the pack knows them) than folds, or a
    fold number outside ``0 .. folds - 1`` (LasegError, one line)."""
    hashes: dict[str, str] = {c: f"case:{c}" for c in cases}
    if pack is not None:
        from .pack import read_pack

        meta, _ = read_pack(pack)
        hashes.update({c: e["image_sha1"] for c, e in meta["cases"].items()})
    fold_split(sorted(hashes), hashes, folds, fold)


def read_metrics_csv(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the CSV log a run writes (``out/logs/version_0/metrics.csv``, Lightning's ``CSVLogger``)
    into columns.

    Lightning writes one row per logging event with blanks for the metrics not logged then;
    blanks become NaN. Returns ``{column: float array}``, all of the same length (the rows),
    e.g. ``epoch``, ``step``, ``train_loss_step``, ``train_loss_epoch``, ``val_loss``, ``val_dice``.
    Select the rows of one metric with ``~np.isnan(cols["val_dice"])``.

    Raises:
        LasegError: the file is missing or empty.
    """
    if not os.path.isfile(path):
        raise LasegError(f"training log {path} does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        records = list(csv.DictReader(f))
    if not records:
        raise LasegError(f"training log {path} holds no rows")
    return {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in records])
            for k in records[0]}


def _device_name(accelerator: str) -> str:
    if accelerator == "gpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {available_cpus()} cores)"


def _load_init(init: str | os.PathLike, prof: Profile) -> UNet:
    """The network of ``init`` (:func:`lasegtut.inference.load_model`: ``weights_only`` loading),
    checked to have the shape and input geometry ``prof`` trains; LasegError otherwise."""
    start, info = load_model(init)
    theirs = info.geometry
    if start.config != prof.model_config() or not theirs.same_slicing(prof.geometry()):
        raise LasegError(f"{init} holds a {list(start.config.widths)} network at {theirs.input_size} px "
                         f"with {start.config.in_channels} input channels (slices across axis {theirs.slice_axis}); the {prof.name} profile trains "
                         f"{list(prof.widths)} at {prof.input_size} px with {2 * prof.context + 1} (axis {prof.slice_axis})")
    return start


def _check_resume(last: Path, model_config: dict, prof: Profile) -> None:
    """Before any work: ``last`` (a run's ``last.ckpt``) must be a readable checkpoint (loaded with
    ``weights_only=True``) of the network and input geometry ``prof`` trains, else LasegError with
    the way out (``--no-resume`` or another ``--out``)."""
    hint = f"use --no-resume to start afresh in {last.parent.parent} (its checkpoints are replaced) or another --out"
    try:
        ckpt = load_torch_file(last, "checkpoint")
    except LasegError as e:
        raise LasegError(f"cannot resume: {e}; {hint}") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise LasegError(f"cannot resume: {last} is not a lasegtut training checkpoint; {hint}")
    theirs = {"model": hp.get("model_config"), **{k: hp.get(k) for k in SLICING_FIELDS}}
    ours = {"model": model_config, **prof.geometry().slicing()}
    if theirs != ours:
        cfg = hp.get("model_config") if isinstance(hp.get("model_config"), dict) else {}
        raise LasegError(f"cannot resume: {last} was trained with another recipe (widths {cfg.get('widths')} "
                         f"at {hp.get('input_size')} px, crop {hp.get('border')}); the {prof.name} profile trains "
                         f"{list(prof.widths)} at {prof.input_size} px, crop {prof.border}; {hint}")


def export_checkpoint(checkpoint: str | os.PathLike, path: str | os.PathLike, meta: dict | None = None) -> Path:
    """Turn a Lightning checkpoint (``best-*.ckpt`` / ``last.ckpt``) into a small ``model.pt``.

    The checkpoint is read with ``torch.load(weights_only=True)`` only: a file that pickles other
    Python objects (it could run code) is refused with a LasegError, as is one that is not a
    lasegtut training checkpoint.
    """
    ckpt = Path(checkpoint)
    obj = load_torch_file(ckpt, "checkpoint")  # also: "checkpoint ... does not exist"
    if not (isinstance(obj, dict) and "hyper_parameters" in obj):
        raise LasegError(f"{ckpt} is not a Lightning checkpoint of `lasegtut train`")
    parse_weights(obj, ckpt)  # every field checked before Lightning builds the module
    try:
        module = LitSegmenter.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    except (RuntimeError, TypeError, KeyError, ValueError) as e:
        raise LasegError(f"{ckpt} is not a checkpoint of lasegtut's LitSegmenter ({type(e).__name__})") from None
    return export_weights(module.model, module.geometry, path, meta=meta)
