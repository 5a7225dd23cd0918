"""The text-to-text data pipeline (t5edu.data, Chapter 06). Offline: local fixtures in the Hub's schemas."""

import gzip
import itertools
import json
import os
from pathlib import Path

import datasets
import pytest
import torch

from t5edu import data, hub_tasks, span_corruption
from t5edu.data import (
    SYNTHETIC_TASKS,
    WORDS,
    DataError,
    TextToTextCollator,
    collate_fn,
    featurize,
    is_heldout,
    make_loader,
    pydoc_documents,
    stdlib_summaries,
    synthetic_mixture,
    synthetic_tokenizer_corpus,
    tokenize_dataset,
)
from t5edu.hub_tasks import load_task
from t5edu.span_corruption import reconstruct, span_corruption_dataset
from t5edu.tokenizer import Tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "data"
datasets.disable_progress_bars()


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.train(synthetic_tokenizer_corpus(), vocab_size=400)


# ---- synthetic mixture ------------------------------------------------------------------------

def _expected(task, words):
    return {"copy": " ".join(words), "reverse": " ".join(words[::-1]), "sort": " ".join(sorted(words)),
            "count": str(len(words)),
            "add": str(int(words[0]) + int(words[-1])) if task == "add" else None}[task]


def test_synthetic_mixture_schema_and_targets():
    ds = synthetic_mixture(1000, seed=3)
    assert isinstance(ds, datasets.Dataset) and ds.column_names == ["task", "inputs", "targets"]
    assert len(ds) == 1000 and set(ds["task"]) == set(SYNTHETIC_TASKS)
    for row in ds:
        prefix, body = row["inputs"].split(": ", 1)
        assert prefix == row["task"]
        words = body.split()
        assert row["targets"] == _expected(row["task"], words), row
        assert len(words) <= 6 and len(row["targets"].split()) <= 4
        if row["task"] != "add":
            assert all(w in WORDS for w in words)
            low, high = data.TASK_WORDS[row["task"]]
            assert low <= len(words) <= high
        if row["task"] in ("copy", "reverse", "sort"):
            assert len(set(words)) == len(words)  # distinct words: one right answer


def test_synthetic_mixture_is_deterministic():
    assert synthetic_mixture(300, seed=1)[:] == synthetic_mixture(300, seed=1)[:]
    assert synthetic_mixture(300, seed=1)[:] != synthetic_mixture(300, seed=2)[:]
    assert synthetic_mixture(100, seed=1)[:] == synthetic_mixture(300, seed=1).select(range(100))[:]


def test_train_and_test_never_share_an_input():
    train = synthetic_mixture(20000, seed=0, split="train")
    test = synthetic_mixture(2000, seed=0, split="test")  # same seed on purpose
    assert not set(train["inputs"]) & set(test["inputs"])
    assert all(is_heldout(x) for x in test["inputs"]) and not any(is_heldout(x) for x in train["inputs"])
    assert set(test["task"]) == set(SYNTHETIC_TASKS)  # every task is evaluated


def test_order_matters_in_some_tasks():
    ds = synthetic_mixture(500, seed=0)
    for task in ("reverse", "sort"):
        rows = [r for r in ds if r["task"] == task]
        assert any(r["targets"] != r["inputs"].split(": ", 1)[1] for r in rows)


def test_synthetic_mixture_task_subset_and_bad_arguments():
    ds = synthetic_mixture(50, seed=0, tasks=("sort",))
    assert set(ds["task"]) == {"sort"}
    with pytest.raises(ValueError, match="unknown synthetic task"):
        synthetic_mixture(5, tasks=("translate",))
    with pytest.raises(ValueError, match="split"):
        synthetic_mixture(5, split="validation")
    with pytest.raises(ValueError):
        synthetic_mixture(-1)


def test_tokenizer_corpus_without_prose():
    small = Tokenizer.train(synthetic_tokenizer_corpus(prose=False), vocab_size=235)
    assert all(len(small.tokenize(w)) == 1 for w in WORDS)


def test_tokenizer_corpus_keeps_every_word_whole(tok):
    assert tok.vocab_size == 400
    assert all(len(tok.tokenize(w)) == 1 for w in WORDS)
    ds = synthetic_mixture(200, seed=0)
    assert all(tok.decode(tok.encode(x)) == x for x in list(ds["inputs"]) + list(ds["targets"]))
    assert max(len(tok.encode(x)) for x in ds["inputs"]) <= 10


# ---- pydoc and stdlib sources -------------------------------------------------------------------

def test_pydoc_documents():
    docs = pydoc_documents()
    assert docs.column_names == ["text", "url"] and len(docs) > 50
    assert all(t.strip() for t in docs["text"]) and list(docs["url"]) == sorted(docs["url"])


def test_stdlib_summaries(capsys):
    ds = stdlib_summaries(["textwrap", "json"])
    out = capsys.readouterr().out
    assert "stdlib_summaries: kept" in out and "without a docstring" in out
    assert ds.column_names == ["task", "inputs", "targets", "source"] and len(ds) > 10
    row = next(r for r in ds if r["source"].startswith("textwrap.py") and "def wrap(" in r["inputs"])
    assert row["targets"].startswith("Wrap a single paragraph of text")
    pairs = zip(ds["inputs"], ds["targets"], strict=True)
    assert all(x.startswith("summarize: ") and t and "\n" not in t for x, t in pairs)
    with pytest.raises(DataError, match="no_such_module"):
        stdlib_summaries(["no_such_module"])


# ---- load_task: local files in the hub schemas ---------------------------------------------------

def test_cnn_dailymail_jsonl():
    ds = load_task("cnn_dailymail", data_files=FIXTURES / "cnn_dailymail.jsonl")
    assert ds.column_names == ["task", "inputs", "targets"] and len(ds) == 3
    assert ds[0]["inputs"].startswith("summarize: The city council")
    assert ds[0]["targets"].startswith("Council votes")


def test_wmt16_parquet():
    ds = load_task("wmt16_en_de", data_files=str(FIXTURES / "wmt16_de_en.parquet"))
    assert ds[0] == {"task": "wmt16_en_de", "inputs": "translate English to German: The house is big.",
                     "targets": "Das Haus ist groß."}


def test_sst2_parquet_labels_become_words():
    ds = load_task("sst2", data_files=[FIXTURES / "sst2.parquet"])
    assert ds["inputs"][0] == "sst2 sentence: a warm , funny and thoroughly charming film"
    assert list(ds["targets"]) == ["positive", "negative", "positive", "negative", "positive"]


def test_c4_json_gz_gives_text():
    ds = load_task("c4", data_files=FIXTURES / "c4.json.gz")
    assert ds.column_names == ["text"] and len(ds) == 3


def test_streaming_gives_the_same_rows():
    for name, file in [("sst2", "sst2.parquet"), ("cnn_dailymail", "cnn_dailymail.jsonl"),
                       ("c4", "c4.json.gz")]:
        streamed = load_task(name, data_files=FIXTURES / file, streaming=True)
        assert isinstance(streamed, datasets.IterableDataset)
        assert list(streamed) == list(load_task(name, data_files=FIXTURES / file))


def test_several_files_are_concatenated(tmp_path):
    second = tmp_path / "more.jsonl"
    second.write_text(json.dumps({"article": "Fourth story.", "highlights": "Four.", "id": "4"}) + "\n",
                      encoding="utf-8")
    ds = load_task("cnn_dailymail", data_files=[FIXTURES / "cnn_dailymail.jsonl", second])
    assert len(ds) == 4 and ds[3]["targets"] == "Four."


def test_hub_without_network_fails_with_one_clear_message():
    with pytest.raises(DataError, match="offline\\? Pass data_files"):
        load_task("sst2", split="validation")


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        load_task("squad", data_files=FIXTURES / "sst2.parquet")


# ---- bad input: one error naming the file and the row ---------------------------------------------

def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_missing_field_names_file_and_row(tmp_path):
    f = _jsonl(tmp_path / "cnn.jsonl", [{"article": "a", "highlights": "b", "id": "1"},
                                         {"article": "c", "highlights": "d", "id": "2"},
                                         {"article": "e", "id": "3"}])
    with pytest.raises(DataError) as err:
        load_task("cnn_dailymail", data_files=f)
    assert str(f) in str(err.value) and "row 2" in str(err.value) and "'highlights'" in str(err.value)


def test_missing_column_names_file(tmp_path):
    f = _jsonl(tmp_path / "sst.jsonl", [{"sentence": "fine", "idx": 0}])
    with pytest.raises(DataError, match="no column 'label'"):
        load_task("sst2", data_files=f)


def test_empty_text_names_file_and_row(tmp_path):
    f = _jsonl(tmp_path / "c4.jsonl", [{"text": "ok", "timestamp": "", "url": ""},
                                        {"text": "  \n ", "timestamp": "", "url": ""}])
    with pytest.raises(DataError, match=r"c4\.jsonl: row 1: empty field 'text'"):
        load_task("c4", data_files=f)


def test_empty_text_in_streaming_mode(tmp_path):
    f = _jsonl(tmp_path / "c4.jsonl", [{"text": "ok", "timestamp": "", "url": ""},
                                        {"text": "", "timestamp": "", "url": ""}])
    with pytest.raises(DataError, match="row 1: empty field 'text'"):
        list(load_task("c4", data_files=f, streaming=True))


def test_bad_label_and_bad_translation(tmp_path):
    f = _jsonl(tmp_path / "sst.jsonl", [{"sentence": "fine", "label": 1, "idx": 0},
                                         {"sentence": "test row", "label": -1, "idx": 1}])
    with pytest.raises(DataError, match="row 1: label -1"):
        load_task("sst2", data_files=f)
    g = _jsonl(tmp_path / "wmt.jsonl", [{"translation": {"de": "Hallo", "en": ""}}])
    with pytest.raises(DataError, match="row 0: empty field 'en'"):
        load_task("wmt16_en_de", data_files=g)


def test_non_utf8_file_names_file_and_line(tmp_path):
    f = tmp_path / "latin1.jsonl"
    f.write_bytes('{"sentence": "fine", "label": 1, "idx": 0}\n'
                  '{"sentence": "caf\xe9", "label": 0, "idx": 1}\n'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.jsonl: line 2 is not valid UTF-8"):
        load_task("sst2", data_files=f)
    g = tmp_path / "latin1.jsonl.gz"
    g.write_bytes(gzip.compress(f.read_bytes()))
    with pytest.raises(DataError, match="line 2 is not valid UTF-8"):
        load_task("sst2", data_files=g)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_task("sst2", data_files=tmp_path / "nope.jsonl")
    f = tmp_path / "x.csv"
    f.write_text("sentence,label\nok,1\n")
    with pytest.raises(DataError, match="unknown file type"):
        load_task("sst2", data_files=f)


def test_broken_json_names_file(tmp_path):
    f = tmp_path / "broken.jsonl"
    f.write_text('{"sentence": "ok", "label": 1}\n{"sentence": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.jsonl: cannot be read as json"):
        load_task("sst2", data_files=f)


# ---- tokenization and collation ------------------------------------------------------------------

def test_tokenize_dataset(tok):
    ds = tokenize_dataset(synthetic_mixture(300, seed=0), tok)
    assert ds.column_names == ["task", "inputs", "targets", "input_ids", "labels"]
    for row in ds:
        assert row["input_ids"] == tok.encode(row["inputs"]) and row["labels"] == tok.encode(row["targets"])


def test_tokenize_dataset_truncates_and_says_so(tok, capsys):
    ds = tokenize_dataset(load_task("cnn_dailymail", data_files=FIXTURES / "cnn_dailymail.jsonl"), tok,
                          max_input_length=20, max_target_length=8)
    assert "cut 3 of 3 inputs to 20 ids and 3 targets to 8 ids" in capsys.readouterr().out
    assert all(len(x) == 20 and x[-1] == tok.eos_id for x in ds["input_ids"])
    assert all(len(y) == 8 and y[-1] == tok.eos_id for y in ds["labels"])
    with pytest.raises(DataError, match="'inputs'"):
        tokenize_dataset(pydoc_documents(), tok)


def test_tokenize_streaming(tok):
    streamed = tokenize_dataset(load_task("sst2", data_files=FIXTURES / "sst2.parquet", streaming=True), tok)
    eager = tokenize_dataset(load_task("sst2", data_files=FIXTURES / "sst2.parquet"), tok)
    assert list(streamed) == list(eager)


def test_collator_pads_masks_and_shifts():
    rows = [{"input_ids": [5, 6, 1], "labels": [7, 1], "task": "x"},
            {"input_ids": [8, 1], "labels": [9, 10, 11, 1]}]
    batch = TextToTextCollator()(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 1], [8, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100, -100], [9, 10, 11, 1]]
    assert batch["decoder_input_ids"].tolist() == [[0, 7, 1, 0], [0, 9, 10, 11]]
    assert all(v.dtype == torch.long for v in batch.values())


def test_collator_uses_the_models_shift_right():
    from t5edu.model import shift_right

    rows = [{"input_ids": [5, 1], "labels": [7, 8, 1]}, {"input_ids": [5, 1], "labels": [9, 1]}]
    batch = collate_fn(pad_id=0)(rows)
    assert torch.equal(batch["decoder_input_ids"], shift_right(batch["labels"], 0, 0))


def test_collator_attention_mask_comes_from_lengths_not_values():
    batch = TextToTextCollator(pad_id=0)([{"input_ids": [0, 5, 1], "labels": [1]}])
    assert batch["attention_mask"].tolist() == [[1, 1, 1]]


def test_collator_pad_to_multiple_and_errors():
    batch = TextToTextCollator(pad_to_multiple_of=8)([{"input_ids": [5, 1], "labels": [1]}])
    assert batch["input_ids"].shape == (1, 8) and batch["labels"].shape == (1, 8)
    with pytest.raises(DataError, match="row 1 of the batch has no 'labels'"):
        TextToTextCollator()([{"input_ids": [5], "labels": [1]}, {"input_ids": [5]}])
    with pytest.raises(DataError, match="empty 'input_ids'"):
        TextToTextCollator()([{"input_ids": [], "labels": [1]}])
    with pytest.raises(DataError, match="empty batch"):
        TextToTextCollator()([])


def test_collator_batch_trains_the_model(tok):
    """The batch is what T5.forward expects: the loss is finite and labels -100 are ignored."""
    from t5edu.model import T5, T5Config

    torch.manual_seed(0)
    model = T5(T5Config(vocab_size=tok.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2,
                        dropout_rate=0.0))
    ds = tokenize_dataset(synthetic_mixture(8, seed=0), tok)
    batch = next(iter(make_loader(ds, batch_size=8, shuffle=False)))
    out = model(**batch)
    again = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  labels=batch["labels"])
    assert torch.isfinite(out.loss) and torch.allclose(out.loss, again.loss)


def test_make_loader_is_seeded_and_covers_everything(tok):
    ds = tokenize_dataset(synthetic_mixture(100, seed=0), tok)
    first = [b["input_ids"].tolist() for b in make_loader(ds, 16, seed=1)]
    second = [b["input_ids"].tolist() for b in make_loader(ds, 16, seed=1)]
    other = [b["input_ids"].tolist() for b in make_loader(ds, 16, seed=2)]
    assert first == second and first != other
    assert sum(len(b) for b in first) == 100
    with pytest.raises(DataError, match="tokenize_dataset"):
        make_loader(synthetic_mixture(10), 4)


# ---- the span-corruption dataset ------------------------------------------------------------------

def test_span_corruption_dataset_on_pydoc(tok):
    docs = pydoc_documents().select(range(12))
    ds = span_corruption_dataset(docs, tok, inputs_length=64, seed=0)
    assert ds.column_names == ["input_ids", "labels"]
    lengths = [len(x) for x in ds["input_ids"]]
    assert lengths.count(64) >= len(ds) - 1  # all full pieces but (possibly) the last
    assert all(len(y) == 14 for x, y in zip(ds["input_ids"], ds["labels"], strict=True) if len(x) == 64)
    stream = list(itertools.chain.from_iterable(tok.encode(t, add_eos=False) for t in docs["text"]))
    rebuilt = itertools.chain.from_iterable(reconstruct(r["input_ids"], r["labels"], tok.sentinel_id(0))
                                            for r in ds)
    assert list(rebuilt) == stream
    again = span_corruption_dataset(docs, tok, inputs_length=64, seed=0, batch_size=1000)
    assert again[:] == ds[:]
    assert span_corruption_dataset(docs, tok, inputs_length=64, seed=1)[:] != ds[:]


def test_span_corruption_dataset_streaming_c4(tok):
    c4 = load_task("c4", data_files=FIXTURES / "c4.json.gz", streaming=True)
    rows = list(span_corruption_dataset(c4, tok, inputs_length=32, seed=0))
    c4_eager = load_task("c4", data_files=FIXTURES / "c4.json.gz")
    eager = span_corruption_dataset(c4_eager, tok, inputs_length=32)
    assert rows == list(eager) and len(rows) >= 2


def test_span_corruption_dataset_rejects_empty_text(tok):
    docs = datasets.Dataset.from_dict({"text": ["fine text here", ""]})
    with pytest.raises(DataError, match="row 1: empty or missing 'text'"):
        span_corruption_dataset(docs, tok, inputs_length=16)
    with pytest.raises(DataError, match="needs a 'text' column"):
        span_corruption_dataset(datasets.Dataset.from_dict({"body": ["x"]}), tok)


def test_module_exports():
    for name in ("synthetic_mixture", "tokenize_dataset", "featurize", "collate_fn"):
        assert name in data.__all__
    for name in ("load_task", "HUB_TASKS"):
        assert name in hub_tasks.__all__ and name not in data.__all__
    for name in ("span_corruption_dataset", "compute_input_and_target_lengths", "random_spans_noise_mask",
                 "reconstruct", "span_corruption", "noise_span_to_unique_sentinel"):
        assert name in span_corruption.__all__ and name not in data.__all__
    assert os.environ.get("HF_DATASETS_OFFLINE") == "1"


def test_featurize_matches_tokenize_dataset_and_cuts_keeping_eos(tok):
    rows = [{"inputs": "copy: red car blue", "targets": "red car blue"},
            {"inputs": "count: sun", "targets": "1"}]
    table = tokenize_dataset(datasets.Dataset.from_list(rows), tok)
    assert featurize(rows, tok) == [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in table]
    cut = featurize(rows, tok, max_input_length=3, max_target_length=2)
    assert [len(f["input_ids"]) for f in cut] == [3, min(3, len(table[1]["input_ids"]))]
    assert all(f["input_ids"][-1] == f["labels"][-1] == tok.eos_id for f in cut)
    assert cut[0]["input_ids"][:2] == table[0]["input_ids"][:2] and len(cut[0]["labels"]) == 2
    with pytest.raises(DataError, match="row 1 has no 'targets' text"):
        featurize([rows[0], {"inputs": "x"}], tok)
    with pytest.raises(ValueError, match="max_input_length must be a positive int"):
        featurize(rows, tok, max_input_length=0)
