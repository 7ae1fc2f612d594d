"""The benchmark runs on the real CIFAR-10 and reports every figure the README quotes (not a timed test)."""

import json

import pytest
from conftest import real_cifar10

CIFAR10 = real_cifar10()


@pytest.mark.slow
@pytest.mark.skipif(CIFAR10 is None, reason="real CIFAR-10 not found: set LONGTAIL_CIFAR10 or place ../shared/data")
def test_bench_writes_every_figure(tmp_path, capsys):
    from longtail.bench import main

    path = tmp_path / "bench.json"
    main(["--root", str(CIFAR10), "--steps", "2", "--warmup", "1", "--repeats", "1", "--eval-batches", "2", "--method", "erm,crt,drolt,diffnet",
          "--no-epoch-rss", "--json", str(path)])
    out = json.loads(path.read_text())
    for key in ("compute_img_s", "library_img_s", "conventional_img_s", "library_vs_compute", "library_vs_conventional",
                "data_only_img_s", "conventional_data_only_img_s", "data_only_vs_conventional", "eval_img_s",
                "conventional_eval_img_s", "peak_rss_mb"):
        assert out[key] > 0, key
    assert out["library_vs_compute"] == pytest.approx(out["library_img_s"] / out["compute_img_s"])
    assert set(out["methods"]) == {"erm", "crt", "drolt", "diffnet"} and out["settings"]["train_images"] == 12406
    assert out["methods"]["drolt"]["centroid_pass_img_s"] > 0
    diffnet = out["methods"]["diffnet"]  # against ERM on the DN-protocol data, which has its own row
    assert diffnet["step_cost_vs_erm"] == pytest.approx(diffnet["erm_img_s"] / diffnet["img_s"])
    assert diffnet["erm_img_s"] != out["methods"]["erm"]["img_s"]
    assert diffnet["exaugment_data_img_s"] > 0 and diffnet["exaugment_vs_per_image"] > 0
    assert "(b) library training" in capsys.readouterr().out


def test_an_unknown_method_row_is_refused():
    from longtail.bench import main

    with pytest.raises(SystemExit, match="unknown --method"):
        main(["--method", "nope"])

