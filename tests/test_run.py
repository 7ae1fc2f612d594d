"""End-to-end runs on the embedded digits: stages, hand-over, selection, resume, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import read_results, run

import longtail

RESULT_KEYS = {"test/acc", "test/acc_many", "test/acc_medium", "test/acc_few", "test/ece", "test/acc_per_class",
               "train_class_counts", "class_names"}


def backbone_state(path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("network.backbone.")}


@pytest.mark.slow
def test_default_run_writes_results_plots_and_a_loadable_checkpoint(digits_ce_run):
    out, results = digits_ce_run
    plots = {p.name for p in (out / "train" / "plots").glob("*.png")}
    assert {"per_class_accuracy.png", "shot_groups.png", "confusion.png", "reliability.png", "val_curves.png"} <= plots
    assert RESULT_KEYS <= set(results)
    stage = read_results(out / "train" / "results.json")
    assert stage["test/acc"] == results["test/acc"]
    assert len(results["test/acc_per_class"]) == 10 and results["class_names"] == [str(i) for i in range(10)]
    counts = results["train_class_counts"]
    assert max(counts) / min(counts) >= 10
    assert results["selection"] == "best val/acc"
    assert 0.2 < results["test/acc"] <= 1.0

    model = longtail.load(results["checkpoint"])
    assert not model.training and model.class_counts == counts
    images = torch.rand(4, 1, 8, 8)
    assert model(images).shape == (4, 10)


@pytest.mark.slow
def test_a_checkpoint_naming_a_module_by_its_old_path_still_loads(digits_ce_run, tmp_path):
    """A checkpoint written before the package root was grouped names e.g. ``longtail.schedules.warmup_multistep``
    in its config; ``longtail.load`` rewrites such a ``_target_`` to the module's new place (MOVED_MODULES)."""
    from longtail.common.checkpoint import CHECKPOINT_KEY, MOVED_MODULES, moved_targets
    from longtail.common.compat import stand_in_trainer

    _, results = digits_ce_run
    checkpoint = torch.load(results["checkpoint"], map_location="cpu", weights_only=False)
    method = checkpoint[CHECKPOINT_KEY]["config"]["method"]
    old = {new: old for old, new in MOVED_MODULES.items()}
    target = method["scheduler"]["_target_"]
    module, _, name = target.rpartition(".")
    method["scheduler"]["_target_"] = f"{old[module]}.{name}"
    assert moved_targets(method)["scheduler"]["_target_"] == target
    torch.save(checkpoint, tmp_path / "old.ckpt")
    model = longtail.load(tmp_path / "old.ckpt")
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)
    stand_in_trainer(model, max_epochs=3)
    model.configure_optimizers()  # builds the scheduler from the rewritten _target_


def test_drw_switches_on_at_the_configured_zero_indexed_epoch(tmp_path):
    record = tmp_path / "weighted.json"
    run(["trainer.max_epochs=3", "trainer.limit_train_batches=1", "method.drw_start=2",
         "+callbacks.record._target_=conftest.RecordLossWeights", f"+callbacks.record.path={record}"], tmp_path)
    assert json.loads(record.read_text()) == [False, False, True]


@pytest.mark.slow
def test_crt_stage_keeps_the_backbone_bit_identical_and_retrains_a_new_classifier(tmp_path):
    results = run(["trainer.max_epochs=2", "+stage@stages.crt=crt", "stages.crt.trainer.max_epochs=2"], tmp_path)
    stage1 = read_results(tmp_path / "train" / "results.json")["checkpoint"]
    stage2 = results["checkpoint"]
    before, after = backbone_state(stage1), backbone_state(stage2)
    assert before.keys() == after.keys() and any("running_mean" in k for k in before)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    head1 = torch.load(stage1, weights_only=False)["state_dict"]["network.head.weight"]
    head2 = torch.load(stage2, weights_only=False)["state_dict"]["network.head.weight"]
    assert not torch.allclose(head1, head2)
    assert results["stage"] == "crt"


@pytest.mark.slow
def test_lws_learns_only_the_scales_and_tau_norm_picks_tau_on_val(tmp_path):
    run(["trainer.max_epochs=2", "+stage@stages.lws=lws", "stages.lws.trainer.max_epochs=1",
         "+stage@stages.tau_norm=tau_norm", "+stages.tau_norm.init_stage=train"], tmp_path)
    lws = longtail.load(read_results(tmp_path / "lws" / "results.json")["checkpoint"])
    trainable = [n for n, p in lws.named_parameters() if p.requires_grad]
    assert trainable == ["network.head.scales"]
    tau_results = read_results(tmp_path / "tau_norm" / "results.json")
    tau_model = longtail.load(tau_results["checkpoint"])
    assert tau_model.network.head.tau in tau_model.taus
    assert not any(p.requires_grad for p in tau_model.parameters())


@pytest.mark.slow
def test_one_stage_runs_alone_from_a_checkpoint(tmp_path, digits_ce_run):
    _, first = digits_ce_run
    with pytest.raises(ValueError, match="init_from"):
        run(["stage=crt", "trainer.max_epochs=1"], tmp_path / "no_init")
    results = run(["stage=crt", f"init_from={first['checkpoint']}", "stage.trainer.max_epochs=1"], tmp_path / "alone")
    assert results["stage"] == "crt"
    assert not (tmp_path / "alone" / "train").exists()
    assert torch.equal(backbone_state(first["checkpoint"])["network.backbone.stem.0.weight"],
                       backbone_state(results["checkpoint"])["network.backbone.stem.0.weight"])


@pytest.mark.slow
def test_a_killed_run_resumes_from_last_ckpt_with_the_same_result(tmp_path):
    common = ["trainer.max_epochs=4", "scheduler.warmup_epochs=1"]
    reference = run(common, tmp_path / "reference")
    with pytest.raises(RuntimeError, match="killed"):
        run([*common, "+callbacks.kill._target_=conftest.KillAtEpoch", "+callbacks.kill.epoch=2"], tmp_path / "killed")
    assert (tmp_path / "killed" / "train" / "checkpoints" / "last.ckpt").is_file()
    resumed = run(common, tmp_path / "killed")
    assert resumed["test/acc"] == pytest.approx(reference["test/acc"])
    # the training cost survives the kill: every image of the 4 epochs counted once
    assert resumed["train_images"] == reference["train_images"] == 4 * sum(reference["train_class_counts"])
    assert resumed["run/train_images"] == resumed["train_images"] and resumed["run/epochs"] == {"train": 4}
    final_ref = torch.load(tmp_path / "reference/train/checkpoints/last.ckpt", weights_only=False)["state_dict"]
    final_res = torch.load(tmp_path / "killed/train/checkpoints/last.ckpt", weights_only=False)["state_dict"]
    for key in final_ref:
        assert torch.allclose(final_ref[key].float(), final_res[key].float(), atol=1e-6), key


@pytest.mark.slow
def test_wandb_logger_runs_offline_and_writes_its_files(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HOME", str(tmp_path))
    run(["logger=wandb", "trainer.max_epochs=1"], tmp_path / "run")
    offline = list((tmp_path / "run" / "train" / "wandb").glob("offline-run-*"))
    assert offline and list(offline[0].glob("*.wandb"))
    media = list(offline[0].rglob("*.png")) + list(offline[0].rglob("*table.json"))
    assert any(p.suffix == ".png" for p in media) and any(p.name.endswith("table.json") for p in media)
    record = next(offline[0].glob("*.wandb")).read_bytes()
    assert b"shot_thresholds" in record and b"IF=10" in record
