"""Chapter 09's pre-training pieces: the labeled task, the recipe's cache key, the cache, the shared loop."""

import json

import pytest
import torch

from t5edu.data import TextToTextCollator
from t5edu.model import T5
from t5edu.pretrain import (
    FILL_WORDS,
    PretrainRecipe,
    accuracy,
    cached_json,
    fill_in_rows,
    fine_tune_steps,
    load_or_pretrain,
    pretraining_documents,
)
from t5edu.tokenizer import pydoc_corpus

LINES = [f"line {i}: the method of a class returns a value when the function is called." for i in range(60)]
CORPUS = pydoc_corpus("train")[:2000]
TINY = PretrainRecipe(vocab_size=300, d_model=16, d_ff=32, num_layers=1, num_heads=2,  # the model
                      inputs_length=16, steps=3, batch_size=4, warmup_steps=1)  # the run


def test_fill_in_rows_blanks_one_listed_word():
    lines = [
        "The method returns a list of names.",
        "too short",
        "No listed word appears in this sentence at all.",
    ]
    rows = fill_in_rows(lines)
    assert rows == [{"task": "fill", "inputs": "fill: The ___ returns a list of names.", "targets": "method"}]
    assert fill_in_rows(["A module is a file of code here."], words=("code",))[0]["targets"] == "code"
    assert (
        "objects" in FILL_WORDS
        and fill_in_rows(["All the objects are kept alive here."])[0]["targets"] == "objects"
    )
    many = fill_in_rows(LINES, seed=1)
    assert len(many) == 60 and many != fill_in_rows(LINES, seed=2) and many == fill_in_rows(LINES, seed=1)


def test_documents_and_recipe_key():
    assert pretraining_documents(["a", "b", "c"], lines_per_document=2) == ["a b", "c"]
    assert PretrainRecipe().key() == PretrainRecipe().key()
    assert PretrainRecipe(steps=601).key() != PretrainRecipe().key()
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
    assert entry.name == f"pretrain-{TINY.key()}"
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


def test_fine_tune_steps_learns_and_rejects_bad_arguments():
    _, tokenizer, _ = load_or_pretrain(TINY, CORPUS, None)
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
