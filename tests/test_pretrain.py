"""Chapter 09's pre-training pieces: the labeled task, the recipe's cache key, the cache, the shared loop."""

import json
import re

import pytest
import torch

from t5edu.data import TextToTextCollator
from t5edu.model import T5
from t5edu.pretrain import (
    KINDS,
    SENTENCE_PATTERNS,
    PretrainRecipe,
    accuracy,
    cached_json,
    fine_tune_steps,
    kind_rows,
    load_or_pretrain,
    made_up_documents,
    made_up_words,
)
from t5edu.tokenizer import pydoc_corpus

CORPUS = pydoc_corpus("train")[:2000]
TINY = PretrainRecipe(vocab_size=300, d_model=16, d_ff=32, num_layers=1, num_heads=2,  # the model
                      inputs_length=16, steps=3, batch_size=4, warmup_steps=1)  # the run


def test_made_up_words_are_distinct_avoid_real_words_and_are_seeded():
    words = made_up_words(per_kind=50, avoid={"bada", "kilo"})
    assert list(words) == list(KINDS) and all(len(words[kind]) == 50 for kind in KINDS)
    every = [w for kind in KINDS for w in words[kind]]
    assert len(set(every)) == len(every) and not {"bada", "kilo"} & set(every)
    assert all(w.isalpha() and w.islower() and 4 <= len(w) <= 6 for w in every)
    assert made_up_words(per_kind=50, seed=1) != made_up_words(per_kind=50) == made_up_words(per_kind=50)


def test_documents_fill_each_slot_with_a_word_of_its_kind():
    words = {kind: [f"{kind[:2]}x{i}" for i in range(3)] for kind in KINDS}
    documents = made_up_documents(words, n_documents=40, sentences_per_document=2, seed=3)
    assert len(documents) == 40 and documents == made_up_documents(words, 40, 2, seed=3)
    patterns = [re.escape(p).replace(r"\{", "{").replace(r"\}", "}") for p in SENTENCE_PATTERNS]
    slots = {kind: "(?:" + "|".join(words[kind]) + ")" for kind in KINDS}
    sentence = "|".join(re.sub(r"\{(\w+)\}", lambda m: slots[m.group(1)], p) for p in patterns)
    for document in documents:
        assert re.fullmatch(f"(?:{sentence}) (?:{sentence})", document), document
    assert not any(kind in " ".join(documents).split() for kind in KINDS)  # the kinds are never named


def test_kind_rows_one_question_per_word():
    words = made_up_words(per_kind=5)
    rows = kind_rows(words, seed=2)
    assert len(rows) == 20 and rows == kind_rows(words, seed=2) and rows != kind_rows(words, seed=3)
    assert {"task": "kind", "inputs": f"what is a {words['tool'][0]}?", "targets": "tool"} in rows


def test_recipe_key_covers_recipe_and_texts():
    assert PretrainRecipe().key(["a"]) == PretrainRecipe().key(["a"])
    assert PretrainRecipe(steps=601).key(["a"]) != PretrainRecipe().key(["a"])
    assert PretrainRecipe().key(["a"]) != PretrainRecipe().key(["b"]) != PretrainRecipe().key(["b"], ["c"])
    assert PretrainRecipe(optimizer="adamw").key() != PretrainRecipe().key()
    config = PretrainRecipe().model_config()
    assert (config.d_model, config.num_layers, config.num_decoder_layers, config.vocab_size) == (
        128,
        2,
        2,
        2000,
    )


def test_load_or_pretrain_caches_by_recipe(tmp_path):
    model, tokenizer, losses = load_or_pretrain(TINY, CORPUS, tmp_path)
    assert len(losses) == TINY.steps and tokenizer.vocab_size == TINY.vocab_size
    (entry,) = tmp_path.iterdir()
    assert entry.name == f"pretrain-{TINY.key(CORPUS, ())}"
    assert {"config.json", "model.safetensors", "spiece.model", "losses.json"} <= {
        p.name for p in entry.iterdir()
    }
    again, _, cached = load_or_pretrain(TINY, CORPUS, tmp_path)
    assert cached == losses == json.loads((entry / "losses.json").read_text())["losses"]
    pairs = zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    fresh, _, recomputed = load_or_pretrain(TINY, CORPUS, None)  # no cache: the same result, trained again
    assert recomputed == losses
    pairs = zip(model.state_dict().values(), fresh.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.fixture(scope="module")
def tokenizer():
    """The TINY recipe's tokenizer (trained on CORPUS), for the fine-tuning tests."""
    return load_or_pretrain(TINY, CORPUS, None)[1]


def test_fine_tune_steps_learns_and_rejects_bad_arguments(tokenizer):
    rows = [{"inputs": f"fill: number {i} is ___", "targets": ("even", "odd")[i % 2]} for i in range(8)]
    features = [
        {"input_ids": tokenizer.encode(r["inputs"]), "labels": tokenizer.encode(r["targets"])} for r in rows
    ]
    torch.manual_seed(0)
    model = T5(TINY.model_config())
    losses = fine_tune_steps(model, features, steps=30, lr=1e-2, batch_size=4, seed=0)
    assert len(losses) == 30 and sum(losses[-5:]) < sum(losses[:5]) and not model.training
    assert 0 <= accuracy(model, tokenizer, rows) <= 100
    with pytest.raises(ValueError, match="batch_size >= 1"):
        fine_tune_steps(model, features, steps=3, lr=1e-3, batch_size=0)
    with pytest.raises(ValueError, match="some features"):
        fine_tune_steps(model, [], steps=3, lr=1e-3)
    assert TextToTextCollator(pad_id=0)([features[0]])["labels"].shape[0] == 1


def test_cached_json_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"losses": [1.5, 0.5], "dev": 12.0}

    assert cached_json(tmp_path, "run", compute) == {"losses": [1.5, 0.5], "dev": 12.0}
    assert cached_json(tmp_path, "run", compute) == {"losses": [1.5, 0.5], "dev": 12.0} and len(calls) == 1
    assert cached_json(None, "run", compute) == {"losses": [1.5, 0.5], "dev": 12.0} and len(calls) == 2


def test_tokenizer_lines_change_the_tokenizer_and_the_cache_entry(tmp_path):
    documents = made_up_documents(made_up_words(per_kind=40), n_documents=200)
    _, plain, _ = load_or_pretrain(TINY, documents, tmp_path)
    _, mixed, _ = load_or_pretrain(TINY, documents, tmp_path, tokenizer_lines=CORPUS)
    assert len(list(tmp_path.iterdir())) == 2  # two entries: the texts are part of the key
    english = "Return the value of the attribute."
    assert len(mixed.encode(english)) < len(plain.encode(english))


def test_fine_tune_steps_with_adafactor(tokenizer):
    documents = made_up_documents(made_up_words(per_kind=10), n_documents=30)
    features = [
        {"input_ids": tokenizer.encode(d), "labels": tokenizer.encode(d.split()[1])} for d in documents[:8]
    ]
    losses = {}
    for name in ("adamw", "adafactor"):
        torch.manual_seed(0)
        losses[name] = fine_tune_steps(T5(TINY.model_config()), features, steps=20, lr=1e-2, batch_size=4,
                                       optimizer=name)
        assert sum(losses[name][-5:]) < sum(losses[name][:5])
    assert losses["adamw"] != losses["adafactor"]
    with pytest.raises(ValueError, match="unknown optimizer"):
        fine_tune_steps(T5(TINY.model_config()), features, steps=2, lr=1e-2, optimizer="sgd")
