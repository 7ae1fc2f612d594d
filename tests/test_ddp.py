"""DDP evaluation is exact: each test sample is counted once over all ranks (ShardedEvalSampler).

With ``use_distributed_sampler=False`` the evaluation loaders shard themselves; a real 2-process
CPU (gloo) ``trainer.test`` must give the same numbers as one process, and its confusion matrix
must hold exactly the test-set size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from conftest import run
from lightning.pytorch.callbacks import Callback

from longtail.data.samplers import ShardedEvalSampler


@pytest.mark.parametrize("num_samples", [0, 1, 5, 10, 11, 97, 1797])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_sharded_eval_sampler_covers_every_index_once(num_samples, world):
    shards = [list(ShardedEvalSampler(num_samples, num_replicas=world, rank=r)) for r in range(world)]
    assert sorted(i for shard in shards for i in shard) == list(range(num_samples))
    lengths = [len(ShardedEvalSampler(num_samples, num_replicas=world, rank=r)) for r in range(world)]
    assert lengths == [len(s) for s in shards]
    assert max(lengths) - min(lengths) <= 1
    for r, shard in enumerate(shards):
        assert shard == list(range(r, num_samples, world))  # sequential, strided, no padding


def test_sharded_eval_sampler_single_process_is_sequential():
    assert not (dist.is_available() and dist.is_initialized())
    sampler = ShardedEvalSampler(7)
    assert (sampler.num_replicas, sampler.rank) == (1, 0)
    assert list(sampler) == list(range(7)) and len(sampler) == 7


def test_sharded_eval_sampler_rejects_bad_world():
    with pytest.raises(ValueError):
        ShardedEvalSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError):
        ShardedEvalSampler(-1)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import lightning as L
    from hydra.utils import instantiate
    from lightning.pytorch.callbacks import Callback

    import longtail
    from longtail.common.checkpoint import read_checkpoint


    class Record(Callback):
        \"\"\"Per rank: samples seen locally and the (synced) test results, written where the test ran.\"\"\"

        def __init__(self, out, test_size):
            self.out, self.test_size, self.count = out, test_size, 0

        def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
            self.count += len(batch[1])

        def on_test_end(self, trainer, pl_module):
            record = {
                "rank": trainer.global_rank,
                "world": trainer.world_size,
                "local_count": self.count,
                "test_size": self.test_size,
                "results": pl_module.test_results,
            }
            Path(self.out).joinpath(f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


    def evaluate(ckpt, strategy, devices, out):
        cfg = read_checkpoint(ckpt)["longtail"]["config"]
        datamodule = instantiate(cfg["datamodule"])
        datamodule.setup("test")
        model = longtail.load(ckpt)
        trainer = L.Trainer(
            strategy=strategy,
            devices=devices,
            accelerator="cpu",
            use_distributed_sampler=False,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            callbacks=[Record(out, len(datamodule.test_split))],
        )
        trainer.test(model, datamodule=datamodule, verbose=False)


    if __name__ == "__main__":
        evaluate(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
    """
)


def _evaluate(script: Path, ckpt: str, strategy: str, devices: int, out: Path) -> list[dict]:
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "MASTER_ADDR", "LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(script), ckpt, strategy, str(devices), str(out)],
        cwd=out, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(devices)]


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with the gloo backend is unavailable"
)
def test_two_process_cpu_test_matches_one_process(tmp_path):
    results = run(["trainer.max_epochs=1"], tmp_path / "run")
    ckpt = results["checkpoint"]
    script = tmp_path / "evaluate.py"
    script.write_text(SCRIPT)

    single = _evaluate(script, ckpt, "auto", 1, tmp_path / "one")[0]
    size = single["test_size"]
    assert single["world"] == 1 and single["local_count"] == size
    one = single["results"]
    assert sum(map(sum, one["test/confusion"])) == size
    # the run's own (single-process) numbers agree
    assert results["test/acc"] == pytest.approx(one["test/acc"], abs=1e-6)

    # ddp: the script is re-launched per rank; ddp_spawn: the model is pickled to the workers (on CPU its
    # metric states arrive in shared memory, which LongTailModule resets at epoch start)
    for strategy in ("ddp", "ddp_spawn"):
        ranks = _evaluate(script, ckpt, strategy, 2, tmp_path / strategy)
        assert [r["world"] for r in ranks] == [2, 2], strategy
        # each rank saw a disjoint half, together every test sample exactly once
        assert [r["local_count"] for r in ranks] == [(size + 1) // 2, size // 2], strategy
        for rank in ranks:  # every rank holds the synced totals
            two = rank["results"]
            assert sum(map(sum, two["test/confusion"])) == size, strategy  # no double counting
            assert two["test/confusion"] == one["test/confusion"], strategy
            for key in ("test/acc", "test/acc_many", "test/acc_medium", "test/acc_few", "test/ece"):
                assert two[key] == pytest.approx(one[key], abs=1e-6, nan_ok=True), (strategy, key)
            assert two["test/acc_per_class"] == pytest.approx(one["test/acc_per_class"], abs=1e-6, nan_ok=True)
            assert two["test/reliability"]["count"] == one["test/reliability"]["count"], strategy


class RecordBatches(Callback):
    """Per rank: the first training batch's size and the number of training batches per epoch."""

    def __init__(self, out: str):
        self.out = Path(out)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and trainer.current_epoch == 0:
            record = {"batch": len(batch[1]), "steps": trainer.num_training_batches, "world": trainer.world_size}
            self.out.joinpath(f"batches{trainer.global_rank}.json").write_text(json.dumps(record))


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with the gloo backend is unavailable"
)
def test_the_configured_batch_is_the_global_batch_under_two_process_ddp(tmp_path):
    """docs/methods/ride.md §4: each of N processes loads batch_size / N, so the steps per epoch (and the lr) do not change."""
    common = ["trainer.max_epochs=1", "datamodule.batch_size=64", "trainer.enable_progress_bar=false",
              "+callbacks.batches._target_=test_ddp.RecordBatches"]
    (tmp_path / "one").mkdir()
    run([*common, f"+callbacks.batches.out={tmp_path / 'one'}"], tmp_path / "one")
    single = json.loads((tmp_path / "one" / "batches0.json").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "MASTER_ADDR", "LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(Path(__file__).parent))
    two = tmp_path / "two"
    two.mkdir()
    command = [sys.executable, "-m", "longtail.run", *common, f"+callbacks.batches.out={two}", "trainer=ddp",
               "trainer.accelerator=cpu", f"hydra.run.dir={two}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((two / f"batches{r}.json").read_text()) for r in (0, 1)]
    assert single == {"batch": 64, "steps": single["steps"], "world": 1}
    assert [r["batch"] for r in ranks] == [32, 32] and [r["world"] for r in ranks] == [2, 2]
    assert [r["steps"] for r in ranks] == [single["steps"]] * 2


BNS_SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel

    from longtail.losses import BNSLoss

    LABELS = [0, 1, 0, 2, 1, 0, 3, 2, 0, 1, 3, 0, 2, 2, 1, 0]
    FORMS = {"paper": dict(extra_anchors=2, negatives=3), "reference": dict(form="reference")}


    def loss_and_gradient(form, world=1, rank=0):
        \"\"\"BNS loss of a linear projector on this process's share of one global batch, and the projector's
        gradient (averaged over the processes by DDP); the negatives' generator is seeded alike everywhere.\"\"\"
        torch.manual_seed(0)
        projector = torch.nn.Linear(6, 4).double()
        model = DistributedDataParallel(projector) if world > 1 else projector
        inputs = torch.randn(2, len(LABELS), 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        share = slice(rank * len(LABELS) // world, (rank + 1) * len(LABELS) // world)
        emb1, emb2 = model(torch.cat([inputs[0, share], inputs[1, share]])).split(len(LABELS) // world)
        loss = BNSLoss(**FORMS[form])(emb1, emb2, torch.tensor(LABELS[share]), generator=torch.Generator().manual_seed(2))
        loss.backward()
        loss = loss.detach()
        if world > 1:
            dist.all_reduce(loss)
            loss /= world
        return {"loss": loss, "weight": projector.weight.grad, "bias": projector.bias.grad}


    def worker(rank, world, rendezvous, out):
        dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
        torch.save({form: loss_and_gradient(form, world, rank) for form in FORMS}, f"{out}/rank{rank}.pt")
        dist.destroy_process_group()


    if __name__ == "__main__":
        torch.save({form: loss_and_gradient(form) for form in FORMS}, f"{sys.argv[2]}/one.pt")
        mp.spawn(worker, args=(2, sys.argv[1], sys.argv[2]), nprocs=2)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with the gloo backend is unavailable"
)
def test_bns_loss_and_gradient_under_two_process_ddp_equal_one_process(tmp_path):
    """docs/methods/ipdpp.md §2: the BNS batch is the global batch; each process's anchors meet every process's negatives."""
    script = tmp_path / "bns_ddp.py"
    script.write_text(BNS_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "MASTER_ADDR", "LOCAL_RANK", "RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "rendezvous"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    one = torch.load(tmp_path / "one.pt")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for form in ("paper", "reference"):
        for rank in ranks:
            for key in ("loss", "weight", "bias"):
                torch.testing.assert_close(rank[form][key], one[form][key], rtol=1e-12, atol=1e-12, msg=f"{form} {key}")
