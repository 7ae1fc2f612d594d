"""The method–data contract (longtail.data.contract) and what methods declare (longtail.methods): the data module
keeps the contract, methods ask only through it, and the plots and bench rows the methods declare are real."""

from __future__ import annotations

import inspect
import re
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import get_method

import longtail.methods
from longtail.data.contract import CONTRACT, MethodData, method_data
from longtail.data.datamodule import LongTailDataModule
from longtail.data.digits import DigitsSource
from longtail.data.samplers import CappedSubsetSampler
from longtail.methods import declared, method_classes

SHARED_RESULTS = {"train_class_counts", "class_names", "test/acc", "test/acc_per_class", "test/confusion"}


def digits(**kwargs) -> LongTailDataModule:
    dm = LongTailDataModule(DigitsSource, 10, channels=1, imbalance_factor=10, **kwargs)
    dm.setup()
    return dm


def test_the_data_module_keeps_the_contract_with_its_signatures():
    dm = digits()
    assert isinstance(dm, MethodData) and method_data(dm) is dm
    for name in CONTRACT:
        declared_params = list(inspect.signature(getattr(MethodData, name)).parameters)[1:]
        assert list(inspect.signature(getattr(dm, name)).parameters) == declared_params, name


def test_a_data_module_without_the_contract_is_named():
    with pytest.raises(RuntimeError, match="its Trainer has none"):
        method_data(None)

    class Partial:
        def batch_transforms(self):
            return None

    with pytest.raises(TypeError, match="Partial does not keep .* it lacks .*set_train_subset"):
        method_data(Partial())


def test_methods_ask_the_data_module_only_through_the_contract():
    """No method reaches the Trainer's data module, its splits or the running loader's sampler past ``self.data``."""
    reach = re.compile(r"trainer\.datamodule|train_dataloader\.sampler|\.train_split|\.meta_split")
    for path in Path(longtail.methods.__file__).parent.glob("*.py"):
        lines = [line for line in path.read_text().splitlines() if reach.search(line)]
        allowed = ["        return method_data(self.trainer.datamodule)"] if path.name == "base.py" else []
        assert lines == allowed, (path.name, lines)


def test_the_training_subset_hook_needs_a_capped_sampler_with_the_methods_cap():
    dm = digits(sampler=partial(CappedSubsetSampler, cap=5))
    with pytest.raises(ValueError, match="needs sampler=capped_subset with sampler.cap=5 .got NoneType"):
        dm.set_train_subset(torch.arange(10), per_class_cap=5)  # no Trainer: no running loader

    class Trainer:
        train_dataloader = dm.train_dataloader()

    dm.trainer = Trainer()
    with pytest.raises(ValueError, match="sampler.cap=4 .got CappedSubsetSampler with cap 5"):
        dm.set_train_subset(torch.arange(10), per_class_cap=4)
    labels = dm.train_labels()
    subset = torch.cat([torch.nonzero(labels == c).flatten()[-5:] for c in range(10)]).sort()[0]
    dm.set_train_subset(subset, per_class_cap=5)
    assert sorted(torch.cat([y for _, y in Trainer.train_dataloader]).tolist()) == sorted(dm.train_labels()[subset].tolist())


def test_the_extra_training_pass_is_the_training_stream_in_another_order():
    dm = digits()
    trained, extra = dm.train_dataloader(), dm.extra_train_dataloader(epoch=3)
    trained.sampler.set_epoch(3)
    first, second = (torch.cat([y for _, y in loader]) for loader in (trained, extra))
    assert sorted(first.tolist()) == sorted(second.tolist()) and not torch.equal(first, second)


def test_declared_plots_draw_from_their_methods_results_keys():
    plots = declared("plots")
    assert {plot.file for plot in plots} >= {"epsilons.png", "class_difficulty.png"}
    keys = {key for cls in method_classes() for key in vars(cls).get("results_keys", ())}
    for plot in plots:
        assert set(plot.needs) <= keys | SHARED_RESULTS, plot
        assert callable(get_method(plot.draw)), plot


def test_every_declared_bench_row_composes():
    """A bench row names overrides of today's config tree (a renamed stage or key would break ``make bench``)."""
    from longtail.bench import BENCH_ROWS, compose_stage

    names = [name for name, _ in declared("bench_rows")]
    assert len(names) == len(set(names)) and {"erm", "crt", "ride", "drolt", "diffnet", "ipdpp"} <= set(names)
    for name, row in BENCH_ROWS.items():
        cfg = compose_stage(["experiment=ce_cifar10", *row.data, *row.overrides])
        assert cfg.method._target_, name
