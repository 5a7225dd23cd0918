"""Chapter 09: fine-tuning a checkpoint written by `transformers` with `t5edu finetune`, reloading the
result in `transformers`, the seed's `generate` call, resume, and the messages for bad input."""

import json
from pathlib import Path

import pytest
import torch

from t5edu import cli
from t5edu.data import DataError, featurize
from t5edu.finetune import (
    FINETUNE_TASKS,
    ModelNotAvailable,
    balanced_mixture,
    load_pretrained,
    load_task_rows,
    local_data_files,
    score_task,
)
from t5edu.metrics import rouge
from t5edu.tokenizer import Tokenizer, pydoc_corpus

transformers = pytest.importorskip("transformers")

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"
VOCAB = 400  # 300 SentencePiece pieces + 100 sentinels: the tokenizer and the model's embeddings agree
CONFIGS = {
    # t5-small's shape in miniature: ReLU, tied embeddings
    "t5": {"feed_forward_proj": "relu", "tie_word_embeddings": True},
    # T5 v1.1: gated GELU, separate output layer
    "t5-v1_1": {"feed_forward_proj": "gated-gelu", "tie_word_embeddings": False},
}


def fixture_texts():
    texts = []
    for name in ("cnn_dailymail", "wmt16_de-en", "glue_sst2"):
        for line in (FIXTURES / name / "train.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts += [v for v in row.values() if isinstance(v, str)] + list(
                (row.get("translation") or {}).values()
            )
    return texts


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("spiece")
    Tokenizer.train(pydoc_corpus("train")[:3000] + fixture_texts(), out_dir=out, vocab_size=VOCAB)
    return out


def hf_checkpoint(directory, tokenizer_dir, kind):
    """A random tiny T5 written by transformers' save_pretrained, and a spiece.model of its vocabulary."""
    torch.manual_seed(0)
    config = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        dropout_rate=0.1,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        **CONFIGS[kind],
    )
    model = transformers.T5ForConditionalGeneration(config)
    model.save_pretrained(directory)
    tokenizer = Tokenizer.load(tokenizer_dir)
    assert tokenizer.vocab_size == config.vocab_size
    tokenizer.save(directory)
    return directory


def run_cli(*argv):
    return cli.main(["finetune", *map(str, argv)])


def finetune_args(model, out, steps, *extra):
    return [
        "--model",
        model,
        "--task",
        "summarize",
        "--data",
        FIXTURES / "cnn_dailymail",
        "--out",
        out,
        "--max-steps",
        steps,
        "--batch-size",
        4,
        "--lr",
        "3e-3",
        "--log-every",
        1,
        "--no-progress",
        "--quiet",
        *list(extra),
    ]


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def finetuned(request, tmp_path_factory, tokenizer_dir):
    """(base checkpoint, fine-tuned directory) for each architecture."""
    root = tmp_path_factory.mktemp(f"ft-{request.param}")
    base = hf_checkpoint(root / "base", tokenizer_dir, request.param)
    assert run_cli(*finetune_args(base, root / "out", 3)) == 0
    return base, root / "out"


def validation_batch(tokenizer):
    rows = load_task_rows("summarize", FIXTURES / "cnn_dailymail", "validation")
    enc = tokenizer.batch_encode([r["inputs"] for r in rows], max_length=512)
    labels = tokenizer.batch_encode([r["targets"] for r in rows], max_length=128)
    return enc["input_ids"], enc["attention_mask"], labels["input_ids"]


def test_finetuned_checkpoint_loads_in_transformers_with_the_same_logits(finetuned):
    base, out = finetuned
    assert {
        "config.json",
        "model.safetensors",
        "spiece.model",
        "latest",
        "metrics.jsonl",
        "finetune.json",
    } <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "finetune.json").read_text())
    assert summary["steps"] == 3 and summary["tasks"] == ["summarize"]
    ours, tokenizer = load_pretrained(out)
    start, _ = load_pretrained(base)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(ours.state_dict().values(), start.state_dict().values(), strict=False)
    ]
    assert sum(changed) > len(changed) // 2, "fine-tuning left the weights unchanged"
    hf = transformers.T5ForConditionalGeneration.from_pretrained(out, attn_implementation="eager").eval()
    input_ids, attention_mask, labels = validation_batch(tokenizer)
    decoder_input_ids = hf._shift_right(labels)
    with torch.no_grad():
        expected = hf(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        ).logits
        got = ours(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        ).logits
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-5
    # and the weights transformers sees are the fine-tuned ones, not the base checkpoint's
    base_hf = transformers.T5ForConditionalGeneration.from_pretrained(
        base, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        before = base_hf(
            input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids
        ).logits
    assert (before - expected).abs().max().item() > 1e-3


def test_seed_generate_call_matches_transformers(finetuned):
    _, out = finetuned
    ours, tokenizer = load_pretrained(out)
    if not hasattr(ours, "generate"):
        import importlib.util

        if importlib.util.find_spec("t5edu.generate") is None:
            pytest.skip("t5edu.generate (Chapter 08) does not exist yet")
        pytest.fail("T5.generate is missing: it should delegate to t5edu.generate.generate")
    hf = transformers.T5ForConditionalGeneration.from_pretrained(out, attn_implementation="eager").eval()
    input_ids, attention_mask, _ = validation_batch(tokenizer)
    input_ids = input_ids[:1, : int(attention_mask[0].sum())]
    # the blog's call, verbatim
    summary_ids = ours.generate(input_ids, max_length=50, num_beams=4, early_stopping=True)
    expected = hf.generate(input_ids, max_length=50, num_beams=4, early_stopping=True)
    assert torch.equal(summary_ids, expected), (summary_ids.tolist(), expected.tolist())
    assert summary_ids.shape[1] <= 50
    # a padded batch, with its attention mask
    input_ids, attention_mask, _ = validation_batch(tokenizer)
    got = ours.generate(
        input_ids, attention_mask=attention_mask, max_length=50, num_beams=4, early_stopping=True
    )
    want = hf.generate(
        input_ids, attention_mask=attention_mask, max_length=50, num_beams=4, early_stopping=True
    )
    assert torch.equal(got, want), (got.tolist(), want.tolist())


def test_resume_continues_bit_for_bit(tmp_path, tokenizer_dir):
    base = hf_checkpoint(tmp_path / "base", tokenizer_dir, "t5")
    assert run_cli(*finetune_args(base, tmp_path / "straight", 4, "--save-every", 2)) == 0
    assert run_cli(*finetune_args(base, tmp_path / "crashed", 2, "--save-every", 2)) == 0
    assert (tmp_path / "crashed" / "latest").read_text().strip() == "checkpoint-00000002"
    assert run_cli(*finetune_args(base, tmp_path / "crashed", 4, "--save-every", 2, "--resume")) == 0
    straight, _ = load_pretrained(tmp_path / "straight")
    resumed, _ = load_pretrained(tmp_path / "crashed")
    assert all(
        torch.equal(a, b)
        for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=False)
    )
    rows = [json.loads(x) for x in (tmp_path / "crashed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_multitask_cli_with_eval(tmp_path, tokenizer_dir, capsys):
    base = hf_checkpoint(tmp_path / "base", tokenizer_dir, "t5")
    code = run_cli(
        "--model",
        base,
        "--task",
        "translate",
        "classify",
        "--data",
        FIXTURES / "wmt16_de-en",
        FIXTURES / "glue_sst2",
        "--out",
        tmp_path / "out",
        "--max-steps",
        2,
        "--batch-size",
        4,
        "--eval",
        "--eval-limit",
        3,
        "--no-progress",
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tasks"] == ["translate", "classify"] and summary["steps"] == 2
    assert set(summary["before"]) == set(summary["after"]) == {"translate", "classify"}
    assert set(summary["after"]["translate"]) == {"bleu"} and set(summary["after"]["classify"]) == {
        "accuracy"
    }


# ----------------------------------------------------------------------------- bad input


def test_hub_id_offline_says_so_and_how_to_use_a_local_directory(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailable) as err:
        load_pretrained("t5edu-tests/no-such-model")
    message = str(err.value)
    assert "not available offline" in message and "local directory" in message and "config.json" in message
    code = run_cli(
        "--model",
        "t5edu-tests/no-such-model",
        "--task",
        "summarize",
        "--data",
        FIXTURES / "cnn_dailymail",
        "--out",
        tmp_path / "out",
    )
    assert code == 2
    stderr = capsys.readouterr().err
    assert "not available offline" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_local_directory_without_spiece_model(tmp_path, tokenizer_dir):
    base = hf_checkpoint(tmp_path / "base", tokenizer_dir, "t5")
    (base / "spiece.model").unlink()
    with pytest.raises(FileNotFoundError, match=r"spiece\.model"):
        load_pretrained(base)


@pytest.mark.parametrize(
    "task, row, fields",
    [
        ("summarize", {"text": "An article.", "summary": "A summary."}, ["'article'", "'highlights'"]),
        ("translate", {"en": "The house.", "de": "Das Haus."}, ["'translation'", "'de'", "'en'"]),
        ("classify", {"text": "a fine film", "label": 1}, ["'sentence'", "'label'"]),
    ],
)
def test_data_file_lacking_the_fields_names_the_fields_expected(tmp_path, task, row, fields, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError) as err:
        load_task_rows(task, path)
    assert all(f in str(err.value) for f in fields), str(err.value)
    code = run_cli("--model", tmp_path, "--task", task, "--data", path, "--out", tmp_path / "out")
    assert code == 2  # the model directory is bad too; whichever comes first, a message and no traceback
    assert "error:" in capsys.readouterr().err


def test_hub_dataset_offline_says_how_to_use_local_files(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as err:
        load_task_rows("summarize", "cnn_dailymail", limit=2)
    assert "abisee/cnn_dailymail" in str(err.value) and "--data FILE_OR_DIRECTORY" in str(err.value)


def test_bad_fixture_and_bad_data_argument():
    with pytest.raises(DataError, match=r"'article'.*'highlights'"):
        load_task_rows("summarize", FIXTURES / "bad_cnn.jsonl")
    with pytest.raises(DataError, match="neither a local file or directory nor the hub dataset"):
        load_task_rows("summarize", "no/such/place")
    with pytest.raises(DataError, match=r"no test\.jsonl"):
        local_data_files(FIXTURES / "cnn_dailymail", "test")
    with pytest.raises(ValueError, match="unknown task"):
        load_task_rows("qa", FIXTURES / "cnn_dailymail")


# ----------------------------------------------------------------------------- the pieces


def test_rows_features_and_truncation(tokenizer_dir):
    tokenizer = Tokenizer.load(tokenizer_dir)
    rows = load_task_rows("classify", FIXTURES / "glue_sst2", "validation")
    assert rows[0] == {
        "task": "classify",
        "inputs": "sst2 sentence: warm , funny and wise",
        "targets": "positive",
    }
    assert {r["targets"] for r in rows} == {"negative", "positive"}
    rows = load_task_rows("translate", FIXTURES / "wmt16_de-en", limit=3)
    assert len(rows) == 3 and rows[0]["inputs"] == "translate English to German: The house is small."
    assert rows[0]["targets"] == "Das Haus ist klein."
    long = load_task_rows("summarize", FIXTURES / "cnn_dailymail", limit=2)
    features = featurize(long, tokenizer, max_input_length=12, max_target_length=5)
    assert [len(f["input_ids"]) for f in features] == [12, 12] and [len(f["labels"]) for f in features] == [
        5,
        5,
    ]
    assert all(
        f["input_ids"][-1] == tokenizer.eos_id and f["labels"][-1] == tokenizer.eos_id for f in features
    )
    full = featurize(long, tokenizer)
    assert full[0]["input_ids"][:11] == features[0]["input_ids"][:11]
    assert (
        FINETUNE_TASKS["summarize"].max_input_length == 512
        and FINETUNE_TASKS["summarize"].max_target_length == 128
    )


def test_balanced_mixture():
    features = {
        "a": [{"task": "a", "i": i} for i in range(2)],
        "b": [{"task": "b", "i": i} for i in range(7)],
    }
    mixed = balanced_mixture(features, seed=3)
    assert len(mixed) == 14 and sum(f["task"] == "a" for f in mixed) == 7
    # every example of the small task is used before any is repeated a third time
    counts = [sum(f["task"] == "a" and f["i"] == i for f in mixed) for i in range(2)]
    assert sorted(counts) == [3, 4]
    assert balanced_mixture(features, seed=3) == mixed and balanced_mixture(features, seed=4) != mixed
    assert len(balanced_mixture(features, per_task=3)) == 6
    with pytest.raises(ValueError):
        balanced_mixture({"a": [], "b": [1]})


def test_scores():
    r = rouge(["the cat sat on the mat"], ["the cat lay on the mat"])
    assert (
        r["rouge1"] == pytest.approx(500 / 6)
        and r["rouge2"] == pytest.approx(60)
        and r["rougeL"] == pytest.approx(500 / 6)
    )
    assert score_task("summarize", ["a b"], ["c d"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert score_task("translate", ["Das Haus ist klein."], ["Das Haus ist klein."])["bleu"] == pytest.approx(
        100
    )
    assert score_task("classify", ["positive", "negative", "positive"], ["positive"] * 3) == {
        "accuracy": pytest.approx(200 / 3)
    }
    with pytest.raises(ValueError):
        score_task("classify", ["positive"], [])


def test_cli_is_registered():
    assert cli.COMMANDS["finetune"][0] == "t5edu.commands.finetune"
    parser = cli.build_parser(selected="finetune")
    args = parser.parse_args(["finetune", "--model", "m", "--task", "summarize", "--out", "o"])
    assert args.max_steps > 0 and args.data is None and not args.resume


# ------------------------------------------------------------- bad numbers and files on the command line


def write_sst2(path, label):
    path.write_text(json.dumps({"sentence": "a fine film", "label": label, "idx": 0}) + "\n")
    return path


# (bad numbers and files on the command line: the matrix in tests/test_cli.py covers `t5edu finetune`)


def test_load_task_rows_checks_files_and_limit(tmp_path):
    (tmp_path / "blank.jsonl").write_text("\n  \n")
    with pytest.raises(DataError, match="the file is empty"):
        load_task_rows("summarize", tmp_path / "blank.jsonl")
    with pytest.raises(DataError, match=r"row 0: label 0\.0 is a float"):
        load_task_rows("classify", write_sst2(tmp_path / "zero.jsonl", 0.0))
    assert load_task_rows("classify", write_sst2(tmp_path / "one.jsonl", 1))[0]["targets"] == "positive"
    for limit in (-3, 0, 2.5, True):
        with pytest.raises(ValueError, match="limit must be a positive number of rows"):
            load_task_rows("classify", FIXTURES / "glue_sst2", limit=limit)
    assert len(load_task_rows("classify", FIXTURES / "glue_sst2", limit=2)) == 2
