"""``python -m longtail.bench``: the library's training path against pure compute and the conventional pipeline.

One process, one run, on the real CIFAR-10-LT IF100 by default (ResNet-32, batch 128, CE,
pad-crop-flip, the same SGD). Rows, in images per second:

* (a) ``compute``: forward, backward and optimizer step on one batch already on the device —
  no data pipeline, no Lightning. The bound the other rows are measured against.
* (b) ``library``: training steps of a real epoch through the LightningDataModule and the ERM
  LightningModule, under a Lightning Trainer with the default callbacks and logger, as a user runs it.
* (c) ``conventional``: a torchvision-style data set of PIL images with per-image transforms, a
  DataLoader with workers and a plain training loop, in the default NCHW layout.
* (d) ``data_only``: batches out of the library's pipeline and out of the conventional one,
  augmented and on the device, no model.
* (e) ``eval``: test-set evaluation, the library's ``Trainer.test`` against a plain loop.

``--method a,b`` adds a row per method: the library's training step relative to ERM on the same data
(methods with their own data protocol, like Difficulty-Net's, get an ERM row on that data).
``diffnet`` also reports its anchor, a reference-style meta step (``diffnet_reference_style``: a model copy, a
``create_graph`` virtual step, a double backward, a separate real forward and backward), measured in the same
interleaved rounds, the peak RSS of one full stage-1 epoch (in a fresh process) and the data-path
speed of its "exaugment" augmentation against torchvision's per-image AutoAugment. ``bns`` is a BNS step
(two views through the CIFAR ResNet-18) against a CE step on the same encoder and batch size, plus the
two-view SimCLR data path against torchvision's per-image pipeline; ``ipdpp`` is the fine-tuning step on
the undersample and ``dpp_select_s``, the k-DPP selection for all CIFAR-10-LT classes (k = 500).
Every method row runs at the bench's ``--batch-size``.
Rows (a)–(c) and the method rows are measured ``--repeats`` times, interleaved, and the median
is reported: on a shared machine a single pass drifts by ±10%.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback
from PIL import Image
from torch.func import functional_call
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from longtail.config.overrides import CONF_DIR
from longtail.engine.stages import stage_configs
from longtail.methods import BenchRow, declared
from longtail.methods.diffnet import DIFFNET_BENCH_DATA, DifficultyNetMetaLearning

# where CIFAR-10 is looked for without --root: $LONGTAIL_CIFAR10, then the project's ../shared/data beside the current
# folder (a checkout run from its root) and beside the source tree (an editable install); an installed wheel
# needs one of the first two or --root
SHARED_CIFAR10 = Path("shared") / "data" / "cifar10-jpeg.tar.gz"


def default_cifar10() -> Path | None:
    candidates = [os.environ.get("LONGTAIL_CIFAR10"), Path.cwd().parent / SHARED_CIFAR10,
                  Path(__file__).resolve().parents[3] / SHARED_CIFAR10]
    return next((Path(c) for c in candidates if c and Path(c).exists()), None)
EXPERIMENTS = {"cifar10": "ce_cifar10", "cifar100": "ce_cifar100"}
# each method's rows (the overrides that turn the ERM/CE run into its training step, and the data they need, on
# which its ERM reference row runs too) are declared by the method (BenchRow in longtail.methods); the bench adds
# its own reference-style Difficulty-Net step, timed with the library's as its anchor
BENCH_ROWS: dict[str, BenchRow] = {
    **dict(declared("bench_rows")),
    "diffnet_reference_style": BenchRow(("method=diffnet", "method._target_=longtail.bench.ReferenceStyleDifficultyNet"),
                                        DIFFNET_BENCH_DATA),
}
METHODS: dict[str, list[str]] = {name: list(row.overrides) for name, row in BENCH_ROWS.items()}
METHOD_DATA: dict[str, list[str]] = {name: list(row.data) for name, row in BENCH_ROWS.items() if row.data}
# rows timed with a method's, in the same rounds, as its anchor
ANCHORS: dict[str, str] = {"diffnet": "diffnet_reference_style"}


def compose_stage(overrides: list[str]):
    """The (last) stage config of ``python -m longtail.run <overrides>``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    return stage_configs(cfg)[-1][1]


class StepTimer(Callback):
    """Wall time of the training (or test) batches after ``warmup`` batches, synchronised on the device."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.batches = warmup, None, None, 0

    def _tick(self, trainer, batch_idx: int, first: bool) -> None:
        if first and batch_idx == self.warmup:
            _sync(trainer.strategy.root_device)
            self.start = time.perf_counter()
        if not first and batch_idx >= self.warmup:
            _sync(trainer.strategy.root_device)
            self.end, self.batches = time.perf_counter(), batch_idx - self.warmup + 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._tick(trainer, batch_idx, True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._tick(trainer, batch_idx, False)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        self._tick(trainer, batch_idx, True)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._tick(trainer, batch_idx, False)

    @property
    def seconds(self) -> float:
        return self.end - self.start


class EpochStartTimer(Callback):
    """Wall time from the start of the first epoch to its first batch: the work a method does at epoch
    start (DRO-LT's centroid pass runs in its ``on_train_epoch_start``, after the callbacks')."""

    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0:
            _sync(trainer.strategy.root_device)
            self.seconds = time.perf_counter() - self.start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(images: int, seconds: float) -> float:
    return images / seconds if seconds > 0 else float("nan")


def _timed(steps: Iterable, warmup: int, images_per_step: int, device: torch.device, body: Callable) -> float:
    """Images per second of ``body(item)`` over ``steps``, after ``warmup`` untimed items."""
    start, timed = None, 0
    for i, item in enumerate(steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        body(item)
        timed += i >= warmup
    _sync(device)
    return _rate(timed * images_per_step, time.perf_counter() - start)


class PILImages(Dataset):
    """The conventional data set: uint8 arrays turned into PIL images, one per ``__getitem__`` (as torchvision's CIFAR)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels, self.transform = labels.tolist(), transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


class Bench:
    """Builds the library's objects from the run config and times the five rows."""

    def __init__(self, args):
        self.args = args
        root = self.root = args.root or default_cifar10()
        if root is None:
            raise SystemExit("no CIFAR found: pass --root PATH (an image-folder tree, its .tar.gz or a torchvision "
                             "root) or set LONGTAIL_CIFAR10")
        self.base = [
            f"experiment={EXPERIMENTS[args.dataset]}", f"datamodule.root={root}", f"model={args.backbone}",
            f"sampler={args.sampler}", f"datamodule.batch_size={args.batch_size}", "logger=csv",
            f"performance.channels_last={str(not args.no_channels_last).lower()}", "trainer.enable_progress_bar=false",
        ]
        self.cfg = compose_stage(self.base)
        self.datamodule = instantiate(self.cfg.datamodule)
        self.datamodule.setup("fit")
        self.device = torch.device(args.device)
        self.batches = args.steps + args.warmup
        self._datamodules: dict = {}

    def compute(self) -> float:
        module = self._module().to(self.device).train()
        optimizer = module.optimizer_factory([p for p in module.parameters() if p.requires_grad])
        images, labels = next(iter(self.datamodule.train_dataloader()))
        images = self.datamodule.batch_transforms()[0].to(self.device)(images.to(self.device))
        labels = labels.to(self.device)

        def step(_):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(module(images), labels).backward()
            optimizer.step()

        return _timed(range(self.batches), self.args.warmup, len(labels), self.device, step)

    def _datamodule(self, cfg):
        """The bench's data module, or one built for a config whose data differs (another split protocol)."""
        if cfg.datamodule == self.cfg.datamodule:
            return self.datamodule
        key = str(cfg.datamodule)
        if key not in self._datamodules:
            self._datamodules[key] = instantiate(cfg.datamodule)
            self._datamodules[key].setup("fit")
        return self._datamodules[key]

    def _module(self, cfg=None, **performance):
        cfg = cfg or self.cfg
        dm = self._datamodule(cfg)
        settings = {**cfg.performance, **performance}
        return instantiate(cfg.method, class_counts=dm.class_counts, class_names=dm.class_names, **settings)

    def library(self, overrides: list[str] | None = None) -> float:
        cfg = compose_stage([*self.base, *(overrides or [])]) if overrides else self.cfg
        cfg.datamodule.batch_size = self.args.batch_size  # a stage's own batch size (BNS: 1024) gives way
        timer = StepTimer(self.args.warmup)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = self._trainer(cfg, timer, tmp, limit_train_batches=self.batches, max_epochs=1, limit_val_batches=0)
            trainer.fit(self._module(cfg), datamodule=self._datamodule(cfg))
        return _rate(timer.batches * self.args.batch_size, timer.seconds)

    def augmentation(self, overrides: list[str], per_image_policy=None, batched: bool = True) -> float:
        """Images per second of the augmentation that ``overrides`` configure, on training batches (one thread),
        with ``per_image_policy`` applied image by image in a loop before it (the path a batched policy replaces);
        ``batched=False`` times the per-image loop alone."""
        augment = compose_stage([*self.base, *overrides]).datamodule.augment
        transform = instantiate(augment)(mean=self.datamodule.mean, std=self.datamodule.std).to(self.device)

        def step(batch):
            images = batch[0].to(self.device, non_blocking=True)
            if per_image_policy is not None:
                images = torch.stack([per_image_policy(image) for image in images])
            if batched:
                transform(images)

        with _single_thread():
            return _timed(_take(_cycle(self.datamodule.train_dataloader), self.batches + 3), 3, self.args.batch_size,
                          self.device, step)

    def centroid_pass(self) -> float:
        """Images per second of DRO-LT's centroid pass (one eval-mode pass as long as the timed epoch)."""
        cfg = compose_stage([*self.base, *METHODS["drolt"]])
        timer = EpochStartTimer()
        with tempfile.TemporaryDirectory() as tmp:
            trainer = self._trainer(cfg, timer, tmp, limit_train_batches=self.batches, max_epochs=1, limit_val_batches=0)
            trainer.fit(self._module(cfg), datamodule=self.datamodule)
        return _rate(self.batches * self.args.batch_size, timer.seconds)

    def _trainer(self, cfg, timer: Callback, tmp: str, **kwargs):
        callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
        for callback in callbacks:
            if hasattr(callback, "dirpath"):
                callback.dirpath, callback.monitor = tmp, None
        loggers = [instantiate(c, save_dir=tmp) for c in cfg.logger.values() if c is not None]
        accelerator = "gpu" if self.device.type == "cuda" else "cpu"
        return instantiate(cfg.trainer, callbacks=[*callbacks, timer], logger=loggers, default_root_dir=tmp,
                           accelerator=accelerator, **kwargs)

    def _conventional_loader(self, train: bool) -> DataLoader:
        dm = self.datamodule
        split = dm.train_split if train else dm.test_split
        normalize = [T.ToTensor(), T.Normalize(dm.mean, dm.std)]
        augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
        return DataLoader(
            PILImages(split.images, split.labels, T.Compose([*augment, *normalize])),
            batch_size=self.args.batch_size if train else dm.eval_batch_size,
            shuffle=train, num_workers=self.args.workers, drop_last=train,
            pin_memory=self.device.type == "cuda", persistent_workers=False,
        )

    def conventional(self) -> float:
        module = self._module(channels_last=False)
        network = module.network.to(self.device).train()
        optimizer = module.optimizer_factory(network.parameters())

        def step(batch):
            images, labels = batch[0].to(self.device, non_blocking=True), batch[1].to(self.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(network(images), labels).backward()
            optimizer.step()

        return _timed(_take(self._conventional_loader(True), self.batches), self.args.warmup,
                      self.args.batch_size, self.device, step)

    def data_only(self) -> tuple[float, float]:
        augment = self.datamodule.batch_transforms()[0].to(self.device)
        passes = max(self.batches, 50)

        def library_step(batch):
            augment(batch[0].to(self.device, non_blocking=True))

        with _single_thread():
            library = _timed(_take(_cycle(self.datamodule.train_dataloader), passes), 5, self.args.batch_size,
                             self.device, library_step)
        conventional = _timed(_take(self._conventional_loader(True), passes), 5, self.args.batch_size, self.device,
                              lambda batch: batch[0].to(self.device, non_blocking=True))
        return library, conventional

    def evaluation(self) -> tuple[float, float]:
        module = self._module()
        timer = StepTimer(1)
        with tempfile.TemporaryDirectory() as tmp:
            limit = self.args.eval_batches or None
            self._trainer(self.cfg, timer, tmp, limit_test_batches=limit).test(module, datamodule=self.datamodule,
                                                                              verbose=False)
        library = _rate(timer.batches * self.datamodule.eval_batch_size, timer.seconds)
        network = self._module(channels_last=False).network.to(self.device).eval()

        def forward(batch):
            with torch.inference_mode():
                network(batch[0].to(self.device, non_blocking=True)).argmax(1)

        loader = self._conventional_loader(False)
        batches = _take(loader, self.args.eval_batches or len(loader))
        conventional = _timed(batches, 1, loader.batch_size, self.device, forward)
        return library, conventional


@contextmanager
def _single_thread():
    """Data-path rows run on one thread, so they compare with the conventional pipeline per core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _cycle(loader_factory: Callable[[], Iterable]):
    while True:
        yield from loader_factory()


def _take(iterable: Iterable, n: int):
    for i, item in enumerate(iterable):
        if i >= n:
            return
        yield item


def peak_rss_mb() -> float:
    """Peak resident memory of this process and of its (finished) worker processes, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def _medians(rows: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median of ``repeats`` interleaved measurements per row, so slow drifts of the machine hit every row alike."""
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(repeats):
        for name, measure in rows.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def run(args) -> dict:
    torch.manual_seed(0)
    bench = Bench(args)
    out: dict = {}
    training = _medians({"compute": bench.compute, "library": bench.library, "conventional": bench.conventional},
                        args.repeats)
    out.update({f"{name}_img_s": rate for name, rate in training.items()})
    out["data_only_img_s"], out["conventional_data_only_img_s"] = bench.data_only()
    out["eval_img_s"], out["conventional_eval_img_s"] = bench.evaluation()
    out["library_vs_compute"] = out["library_img_s"] / out["compute_img_s"]
    out["library_vs_conventional"] = out["library_img_s"] / out["conventional_img_s"]
    out["data_only_vs_conventional"] = out["data_only_img_s"] / out["conventional_data_only_img_s"]
    out["data_only_vs_conventional_per_core"] = out["data_only_vs_conventional"] * max(1, args.workers)
    out["eval_vs_conventional"] = out["eval_img_s"] / out["conventional_eval_img_s"]
    methods = [m for m in args.method.split(",") if m]
    if methods:
        rows = method_rows(methods)
        rates = _medians({name: partial(bench.library, o) for name, o in rows.items()}, args.repeats)
        out["methods"] = method_figures(methods, rates)
        if "drolt" in methods:
            out["methods"]["drolt"]["centroid_pass_img_s"] = bench.centroid_pass()
        if "diffnet" in methods:
            out["methods"]["diffnet"].update(diffnet_extras(bench, args))
        if "bns" in methods:
            out["methods"]["bns"].update(bns_extras(bench))
        if "ipdpp" in methods:
            from longtail.data.dpp import time_selection

            out["methods"]["ipdpp"]["dpp_select_s"] = time_selection()
    out["peak_rss_mb"] = peak_rss_mb()
    out["machine"] = {
        "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "device": str(bench.device), "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if bench.device.type == "cuda" else None,
    }
    out["settings"] = {k: v for k, v in vars(args).items() if k != "json"}
    out["settings"]["train_images"] = len(bench.datamodule.train_split)
    return out


def method_rows(methods: list[str]) -> dict[str, list[str]]:
    """The library rows timed for ``--method``: ERM, each method and its anchor, each method's data's ERM row,
    by name, with their config overrides."""
    timed = list(dict.fromkeys([*methods, *(ANCHORS[m] for m in methods if m in ANCHORS)]))
    baselines = {_erm_row(m): METHOD_DATA.get(m, []) for m in ["erm", *timed]}
    return {**baselines, **{m: [*METHOD_DATA.get(m, []), *METHODS[m]] for m in timed}}


def method_figures(methods: list[str], rates: dict[str, float]) -> dict:
    """Per method: its rate, its ERM row's, the step cost against ERM and, with an anchor (Difficulty-Net's
    reference-style step), the anchor's rate and cost against ERM and the method's cost as a fraction of it."""
    figures = {m: {"img_s": rates[m], "erm_img_s": rates[_erm_row(m)], "step_cost_vs_erm": rates[_erm_row(m)] / rates[m]}
               for m in methods}
    for m in methods:
        if m in ANCHORS:
            anchor = rates[ANCHORS[m]]
            figures[m].update({"reference_style_img_s": anchor,
                               "reference_style_step_cost_vs_erm": rates[_erm_row(ANCHORS[m])] / anchor,
                               "step_cost_vs_reference_style": anchor / rates[m]})
    return figures


def _erm_row(method: str) -> str:
    """The name of the ERM row a method is compared with (ERM on the method's data)."""
    return f"erm@{'+'.join(METHOD_DATA[method])}" if method in METHOD_DATA else "erm"


def diffnet_extras(bench: Bench, args) -> dict:
    """Difficulty-Net's data path ("exaugment" batched vs torchvision's per-image AutoAugment) and the peak RSS
    of one full stage-1 epoch in a fresh process (the real CIFAR-10-LT under the DN protocol: 12,341 images,
    more than CIFAR-100-LT's 10,302)."""
    from torchvision.transforms import v2

    per_image = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
    extras = {
        "exaugment_data_img_s": bench.augmentation(["augment=cifar_exaugment"]),
        "exaugment_per_image_autoaugment_img_s": bench.augmentation(
            ["augment=cifar_exaugment", "augment.autoaugment=null"], per_image
        ),
    }
    extras["exaugment_vs_per_image"] = extras["exaugment_data_img_s"] / extras["exaugment_per_image_autoaugment_img_s"]
    if args.epoch_rss:
        command = [sys.executable, "-m", "longtail.bench", "--root", str(bench.root), "--device", args.device,
                   "--one-epoch", "diffnet"]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        extras["epoch"] = json.loads(result.stdout.strip().splitlines()[-1])
    return extras


class ReferenceStyleDifficultyNet(DifficultyNetMetaLearning):
    """The anchor of Difficulty-Net's step cost: the stage-1 step (docs/methods/diffnet.md §3) the way the reference code and
    Meta-Weight-Net take it — a deepcopy of the classifier, a ``create_graph=True`` virtual SGD step, a double
    backward for Difficulty-Net's meta-gradient, then a separate real forward and backward of the classifier."""

    def training_step(self, batch, batch_idx):
        images, target = batch
        images = self.to_memory_format(images)
        optimizer = self.optimizers()[0]
        meta_images, meta_target = self.next_meta_batch()
        lrs = self._step_sizes(optimizer.optimizer)
        pseudo = copy.deepcopy(self.network)
        weights, driver = self.class_weights()
        params = dict(pseudo.named_parameters())
        grads = torch.autograd.grad(self.loss(pseudo(images), target, weights), list(params.values()),
                                    create_graph=True)
        stepped = {n: p - lrs[n] * g for (n, p), g in zip(params.items(), grads)}
        meta_loss = F.cross_entropy(functional_call(pseudo, stepped, (meta_images,)), meta_target)
        self.update_difficulty_net(meta_loss + self.lamda * driver)
        with torch.no_grad():
            weights, _ = self.class_weights()
        loss = self.loss(self(images), target, weights)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


def bns_extras(bench: Bench) -> dict:
    """The two-view SimCLR augmentation (batched on the device, docs/methods/ipdpp.md §2) against torchvision's per-image
    pipeline applied twice to every image, as DataLoader workers would (one thread each)."""
    from torchvision.transforms import v2

    view = v2.Compose([
        v2.RandomResizedCrop(32, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(1.6, 1.6, 1.6, 0.4)], p=0.8), v2.RandomGrayscale(0.2),
        v2.GaussianBlur(3, (0.1, 2.0)), v2.ToDtype(torch.float32, scale=True),
    ])
    extras = {
        "two_view_data_img_s": bench.augmentation(["stage=bns"]),
        "two_view_per_image_img_s": bench.augmentation(["stage=bns"], lambda image: torch.stack([view(image), view(image)]),
                                                       batched=False),
    }
    extras["two_view_vs_per_image"] = extras["two_view_data_img_s"] / extras["two_view_per_image_img_s"]
    return extras


def one_epoch(args) -> dict:
    """One full training epoch of ``args.one_epoch`` (no validation), with its peak RSS and wall time."""
    bench = Bench(args)
    cfg = compose_stage([*bench.base, *METHOD_DATA.get(args.one_epoch, []), *METHODS[args.one_epoch]])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = bench._trainer(cfg, Callback(), tmp, max_epochs=1, limit_val_batches=0)
        trainer.fit(bench._module(cfg), datamodule=bench._datamodule(cfg))
    images = len(bench._datamodule(cfg).train_split)
    return {"method": args.one_epoch, "train_images": images, "seconds": time.perf_counter() - start,
            "peak_rss_mb": peak_rss_mb()}


def report(out: dict) -> str:
    rows = [
        ("(a) compute bound", out["compute_img_s"], ""),
        ("(b) library training", out["library_img_s"], f"b/a {out['library_vs_compute']:.3f}   b/c {out['library_vs_conventional']:.2f}"),
        ("(c) conventional training", out["conventional_img_s"], ""),
        ("(d) library data path", out["data_only_img_s"], f"vs conventional {out['data_only_vs_conventional']:.1f}x "
                                                          f"({out['data_only_vs_conventional_per_core']:.1f}x per core)"),
        ("    conventional data path", out["conventional_data_only_img_s"], ""),
        ("(e) library evaluation", out["eval_img_s"], f"vs conventional {out['eval_vs_conventional']:.2f}x"),
        ("    conventional evaluation", out["conventional_eval_img_s"], ""),
    ]
    lines = [f"{name:<30} {rate:>10.0f} img/s   {note}" for name, rate, note in rows]
    for name, row in out.get("methods", {}).items():
        lines.append(f"method {name:<23} {row['img_s']:>10.0f} img/s   step cost vs ERM {row['step_cost_vs_erm']:.2f}x")
        if "reference_style_img_s" in row:
            lines.append(f"    reference-style step         {row['reference_style_img_s']:>10.0f} img/s   step cost vs ERM "
                         f"{row['reference_style_step_cost_vs_erm']:.2f}x; {name} costs "
                         f"{row['step_cost_vs_reference_style']:.2f}x of it")
        if "centroid_pass_img_s" in row:
            lines.append(f"    {name} centroid pass        {row['centroid_pass_img_s']:>10.0f} img/s")
        if "two_view_data_img_s" in row:
            lines.append(f"    two-view SimCLR data path    {row['two_view_data_img_s']:>10.0f} img/s   "
                         f"vs per-image torchvision {row['two_view_vs_per_image']:.1f}x")
        if "dpp_select_s" in row:
            lines.append(f"    k-DPP selection, all CIFAR-10-LT classes (k 500): {row['dpp_select_s']:.2f} s")
        if "exaugment_data_img_s" in row:
            lines.append(f"    exaugment data path          {row['exaugment_data_img_s']:>10.0f} img/s   "
                         f"vs per-image AutoAugment {row['exaugment_vs_per_image']:.1f}x")
        if "epoch" in row:
            epoch = row["epoch"]
            lines.append(f"    one stage-1 epoch ({epoch['train_images']} images) {epoch['seconds']:.0f} s, "
                         f"peak RSS {epoch['peak_rss_mb']:.0f} MiB")
    machine = out["machine"]
    lines.append(f"peak RSS {out['peak_rss_mb']:.0f} MiB; {machine['cores']} cores, torch {machine['torch']} "
                 f"({machine['torch_threads']} threads), device {machine['device']}")
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--root", type=Path, default=None, help="CIFAR image-folder tree, its .tar.gz, or a torchvision root")
    parser.add_argument("--dataset", choices=sorted(EXPERIMENTS), default="cifar10")
    parser.add_argument("--backbone", default="resnet32", help="a model config name (conf/model)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--sampler", default="instance", help="a sampler config name (conf/sampler)")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per row")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved measurements per row; the median is kept")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before each row")
    parser.add_argument("--eval-batches", type=int, default=0, help="test batches per evaluation row (0: all)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the conventional pipeline")
    parser.add_argument("--method", default="", help=f"comma-separated method rows: {', '.join(METHODS)}")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-channels-last", action="store_true", help="measure with the NCHW layout")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--no-epoch-rss", dest="epoch_rss", action="store_false",
                        help="skip the full-epoch peak-RSS run of --method diffnet")
    parser.add_argument("--one-epoch", choices=sorted(METHODS), default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def quiet() -> None:
    """Keep the report readable: no Lightning banners or library warnings."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv=None) -> dict:
    args = parse_args(argv)
    quiet()
    if args.one_epoch:
        print(json.dumps(one_epoch(args)))
        return {}
    unknown = [m for m in args.method.split(",") if m and m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown --method {unknown}: choose from {', '.join(METHODS)}")
    out = run(args)
    print(report(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
