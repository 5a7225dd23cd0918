"""`make gpu-report` runs end to end on a CPU with --smoke: it cannot break unseen before a GPU is at hand."""

import json

import pytest

pytest.importorskip("transformers")

from t5edu.authoring import gpu_report

pytestmark = pytest.mark.slow  # about a minute: 24 training rows (some traced by torch.compile), decoding


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    path = gpu_report.run(out, smoke=True, device="cpu", budget_s=10_000, log=lambda line: None)
    assert path.parent == out and path.suffix == ".json"
    return json.loads(path.read_text())


def test_the_report_has_every_section_and_key(report):
    for key in (
        "device",
        "torch",
        "transformers",
        "train",
        "optimizer_memory",
        "generate",
        "profile",
        "demo",
    ):
        assert key in report, key
    assert report["skipped"] == []
    train_keys = {"model", "mode", "library", "batch_size", "tokens_per_s", "mfu", "peak_memory_gb"}
    assert all(train_keys <= set(row) for row in report["train"])
    assert all({"library", "num_beams", "batch_size", "seconds"} <= set(row) for row in report["generate"])
    assert {"seconds", "exact_match"} <= set(report["demo"])


def test_every_model_mode_and_library_is_measured(report):
    seen = {(r["model"], r["mode"], r["library"]) for r in report["train"]}
    models = {m for m, *_ in gpu_report.shapes(smoke=True)}
    libraries = {"t5edu", "transformers-eager", "transformers-sdpa"}
    assert seen == {(m, mode, lib) for m in models for mode in gpu_report.MODES for lib in libraries}
    assert all(r["tokens_per_s"] > 0 for r in report["train"])
    assert {(r["num_beams"], r["batch_size"]) for r in report["generate"]} == {(1, 1), (4, 1), (1, 3), (4, 3)}
    assert {r["optimizer"] for r in report["optimizer_memory"]} == {"adamw", "adafactor"}


def test_identical_weights_give_the_same_step0_loss_in_every_pair(report):
    # v1.1 (untied head) included: transformers 5 ties lm_head to the embedding, which the twin must undo
    bad = [r for r in report["train"] if not r["same_loss_as_t5edu"]]
    assert not bad, bad
    assert all(r["same_tokens_as_t5edu"] for r in report["generate"])


def test_adafactor_keeps_less_state_than_adamw(report):
    by = {(r["model"], r["optimizer"]): r["state_gb"] for r in report["optimizer_memory"]}
    for model, _ in {k for k in by if k[1] == "adamw"}:
        assert by[(model, "adafactor")] < by[(model, "adamw")]


def test_the_file_is_named_after_the_device(tmp_path):
    assert gpu_report.report_path(tmp_path, "NVIDIA H200").name == "nvidia-h200.json"
    assert gpu_report.report_path(tmp_path, "cpu (cpu)").name == "cpu-cpu.json"


def test_without_cuda_the_full_report_refuses(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(SystemExit, match="no CUDA device"):
        gpu_report.run(tmp_path, device="cpu")


def test_an_update_measures_only_what_the_report_lacks(report, tmp_path):
    # a run cut short (here: one train pair and the demo missing) is completed by a second, short run
    path = gpu_report.report_path(tmp_path, report["device"])
    lacking = dict(report, demo=None, skipped=["demo: ModuleNotFoundError", "train t5-tiny bf16"])
    lacking["train"] = [r for r in report["train"] if (r["model"], r["mode"]) != ("t5-tiny", "bf16")]
    path.write_text(json.dumps(lacking))
    lines = []
    gpu_report.run(
        tmp_path, smoke=True, device="cpu", budget_s=10_000, only=["train", "demo"], log=lines.append
    )
    updated = json.loads(path.read_text())
    pairs = [(r["model"], r["mode"], r["library"]) for r in updated["train"]]
    assert sorted(pairs) == sorted((r["model"], r["mode"], r["library"]) for r in report["train"])
    assert sum(line.startswith("train ") for line in lines) == 3  # one pair, three libraries: no more
    assert updated["demo"] is not None and updated["skipped"] == []
    assert updated["updates"] == [["demo", "train"]]


def test_an_update_needs_a_report_of_the_same_environment(report, tmp_path):
    with pytest.raises(SystemExit, match="there is none"):
        gpu_report.run(tmp_path, smoke=True, device="cpu", only=["demo"], log=lambda line: None)
    path = gpu_report.report_path(tmp_path, report["device"])
    path.write_text(json.dumps(dict(report, torch="0.0")))
    with pytest.raises(SystemExit, match=r"measured with torch '0\.0'"):
        gpu_report.run(tmp_path, smoke=True, device="cpu", only=["demo"], log=lambda line: None)


def test_the_profile_splits_one_step_into_groups_that_add_up(report):
    profile = report["profile"]
    assert set(profile["share"]) == {*gpu_report.PROFILE_GROUPS, "other"}
    assert abs(sum(profile["share"].values()) - 1) < 0.01
    assert profile["share"]["matmul"] > 0  # a T5 step without matrix products would be no T5 step
