"""The decoupled classifier stages on ImageNet-LT, iNaturalist and Places-LT (docs/methods/baselines.md §3-4; issue 11 item 4)."""

from __future__ import annotations

import pytest
from conftest import compose_config, read_results, run
from fakedata import make_list_dataset
from test_oltr_and_schedules import offline  # noqa: F401  (fixture)

from longtail.engine.stages import stage_configs
from longtail.models import create_backbone

# experiment -> (stage-1 epochs, batch, classifier lr, weight decay, cRT epochs)
RECIPES = {
    "decouple_imagenet_lt_resnext50": (90, 512, 0.2, 5.0e-4, 10),
    "decouple_inat_resnet50": (90, 512, 0.2, 1.0e-4, 30),
    "decouple_places_lt_resnet152": (30, 256, 0.1, 5.0e-4, 10),
}


@pytest.mark.parametrize("experiment", sorted(RECIPES))
def test_large_scale_recipes_for_crt_lws_and_tau_norm(experiment):
    epochs, batch, lr, weight_decay, crt_epochs = RECIPES[experiment]
    stages = dict(stage_configs(compose_config([f"experiment={experiment}"])))
    assert list(stages) == ["train", "crt", "lws", "tau_norm"]
    assert stages["train"].trainer.max_epochs == epochs
    assert stages["train"].method.scheduler._target_ == "longtail.engine.schedules.warmup_cosine"
    for name in ("crt", "lws", "tau_norm"):
        assert stages[name].init_stage == "train"
    for name, max_epochs in (("crt", crt_epochs), ("lws", 5)):
        stage = stages[name]
        assert stage.sampler._target_ == "longtail.data.samplers.ClassAwareSampler"
        assert stage.sampler.num_samples_cls == 4
        assert stage.datamodule.batch_size == batch and stage.trainer.max_epochs == max_epochs
        assert (stage.method.optimizer.lr, stage.method.optimizer.weight_decay) == (lr, weight_decay)
        assert stage.method.scheduler._target_ == "longtail.engine.schedules.warmup_cosine"
        assert "milestones" not in stage.method.scheduler


def test_places_lt_resnet152_is_imagenet_pretrained_and_says_where_the_weights_go(offline):  # noqa: F811
    assert compose_config(["experiment=decouple_places_lt_resnet152"]).model.backbone_kwargs.pretrained is True
    with pytest.raises(RuntimeError, match="resnet152-f82ba261.pth"):
        create_backbone("resnet152", pretrained=True)
    with pytest.raises(FileNotFoundError, match="no_such_file.pth"):
        create_backbone("resnet152", pretrained="no_such_file.pth")


@pytest.mark.slow
def test_the_imagenet_lt_decoupling_stages_run_on_list_files(tmp_path):
    make_list_dataset(tmp_path / "data", kind="imagenet_lt", counts=(10, 6, 4), val_per_class=2, test_per_class=2)
    run(["experiment=decouple_imagenet_lt_resnext50", f"datamodule.root={tmp_path / 'data'}", "model=resnet10",
         "datamodule.num_classes=3", "datamodule.num_workers=0", "datamodule.persistent_workers=false",
         "datamodule.image_size=32", "datamodule.resize=36", "datamodule.batch_size=4", "decouple.batch_size=4",
         "debug=smoke", "debug.trainer.max_epochs=1", "debug.trainer.limit_train_batches=1",
         "debug.trainer.limit_val_batches=1", "debug.trainer.limit_test_batches=1"], tmp_path / "run")
    for stage in ("crt", "lws", "tau_norm"):
        assert read_results(tmp_path / "run" / stage / "results.json")["stage"] == stage
