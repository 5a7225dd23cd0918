"""Chapter 07: the training loop's parts — loss, schedules, accumulation, data order (t5edu.train),
checkpoints (t5edu.checkpoint), greedy decoding and metrics (t5edu.metrics) — and the exercise checks."""

import copy
import json
import math
from dataclasses import replace
from itertools import islice

import pytest
import torch
import torch.nn.functional as F

from t5edu import checkpoint as C
from t5edu import metrics as M
from t5edu import train as T
from t5edu.classroom.checks import ch07
from t5edu.classroom.solutions import ch07 as solutions
from t5edu.encoder import T5Config
from t5edu.model import T5


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is faster, and never stalls on a busy core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(seed=0, dropout=0.0, vocab=40):
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16,
                      dropout_rate=dropout)
    return T5(config)


def features(n=48, seed=0, vocab=40):
    """Reverse a random sequence: lengths vary, so batches have padding."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(1, 7, (1,), generator=g))
        x = torch.randint(3, vocab, (k,), generator=g).tolist()
        out.append({"input_ids": [*x, 1], "labels": [*x[::-1], 1]})
    return out


def collate(rows):
    from t5edu.data import TextToTextCollator

    return TextToTextCollator(pad_id=0)(rows)


# ----------------------------------------------------------------------------- loss, schedule, step


def test_token_loss_sum_ignores_padding_and_matches_mean():
    logits = torch.randn(3, 5, 7)
    labels = torch.tensor([[1, 2, 3, -100, -100], [4, -100, -100, -100, -100], [5, 6, 0, 1, 2]])
    total, count = T.token_loss_sum(logits, labels)
    assert count == 9
    assert torch.allclose(total / count, F.cross_entropy(logits.reshape(-1, 7), labels.reshape(-1)))
    logits[labels == -100] = 1e3
    assert torch.allclose(T.token_loss_sum(logits, labels)[0], total)


def test_schedules_by_hand_and_state_dict_roundtrip(tmp_path):
    s = T.Schedule("inverse_sqrt", warmup=10, total=100)
    assert [round(s(i), 6) for i in (0, 4, 9, 39, 999)] == [0.1, 0.5, 1.0, 0.5, 0.1]
    assert T.Schedule("linear", 10, 110)(59) == pytest.approx(0.5)
    assert T.Schedule("cosine", 10, 110)(59) == pytest.approx(0.5)
    assert T.Schedule("cosine", 10, 110)(109) == pytest.approx(0.0)
    assert T.Schedule("constant", 10, 110)(500) == 1.0
    with pytest.raises(ValueError):
        T.Schedule("nope", 1, 2)(5)
    model = tiny_model()
    opt = T.make_optimizer(model, "adamw", lr=1.0)
    sched = T.make_scheduler(opt, "inverse_sqrt", warmup=4, total=100)
    for _ in range(6):
        opt.step()
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    opt2 = T.make_optimizer(model, "adamw", lr=1.0)
    sched2 = T.make_scheduler(opt2, "inverse_sqrt", warmup=4, total=100)
    sched2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    sched.step()
    sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr() == [math.sqrt(4 / 8)] * 2  # matrices, vectors


def test_adafactor_is_torch_and_factored():
    model = tiny_model()
    opt = T.make_optimizer(model, "adafactor", lr=1e-2)
    assert isinstance(opt, torch.optim.Adafactor)
    batch = collate(features(8))
    T.train_step(model, [batch], opt)
    state = opt.state[model.lm_head.weight]
    assert state["row_var"].numel() + state["col_var"].numel() < model.lm_head.weight.numel()
    with pytest.raises(ValueError):
        T.make_optimizer(model, "sgd")


def test_gradient_accumulation_equals_one_big_batch():
    rows = features(12)
    results = []
    for micro in ([rows], [rows[:5], rows[5:]], [rows[:3], rows[3:4], rows[4:]]):
        model = tiny_model()
        opt = torch.optim.SGD(model.parameters(), lr=1.0)  # the weights move by the (clipped) gradient
        stats = T.train_step(model, [collate(m) for m in micro], opt, clip_norm=1.0)
        results.append((stats, [p.detach().clone() for p in model.parameters()]))
    (s0, p0), *others = results
    for stats, params in others:
        assert stats["target_tokens"] == s0["target_tokens"]
        assert stats["loss"] == pytest.approx(s0["loss"], rel=1e-5)
        assert stats["grad_norm"] == pytest.approx(s0["grad_norm"], rel=1e-5)
        assert max((a - b).abs().max().item() for a, b in zip(p0, params, strict=True)) < 1e-6


def test_clipping_bounds_the_update():
    model = tiny_model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    stats = T.train_step(model, [collate(features(8))], opt, clip_norm=1e-3)
    assert stats["grad_norm"] > 1e-3  # the norm before clipping is reported
    step = torch.sqrt(sum(((p - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True)))
    assert step.item() == pytest.approx(1e-3, rel=1e-4)


# ----------------------------------------------------------------------------- data order


def test_global_batches_resume_and_epochs():
    full = list(islice(T.global_batches(23, 5, seed=3), 13))  # 4 batches per epoch
    assert [p for p, _ in full] == list(range(13))
    for start in (0, 1, 4, 7, 12):
        assert list(islice(T.global_batches(23, 5, seed=3, start=start), 13 - start)) == full[start:]
    for epoch in range(3):
        seen = [i for _, idx in full[4 * epoch:4 * epoch + 4] for i in idx]
        assert len(seen) == len(set(seen)) == 20
    assert [idx for _, idx in full[:4]] != [idx for _, idx in full[4:8]]  # reshuffled every epoch
    assert full != list(islice(T.global_batches(23, 5, seed=4), 13))
    with pytest.raises(ValueError):
        next(T.global_batches(3, 5, seed=0))


def test_shard_splits_rows_and_tensors():
    assert T.shard(list(range(8)), 1, 2) == [4, 5, 6, 7]
    batch = collate(features(4))
    half = T.shard(batch, 0, 2)
    assert torch.equal(half["input_ids"], batch["input_ids"][:2])
    with pytest.raises(ValueError):
        T.shard(list(range(5)), 0, 2)


# ----------------------------------------------------------------------------- checkpoints


def test_rng_state_roundtrip_with_weights_only(tmp_path):
    import random

    import numpy as np

    C.seed_everything(5)
    torch.save(C.rng_state(), tmp_path / "rng.pt")
    first = (random.random(), np.random.rand(), torch.rand(3))
    C.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def _saved(tmp_path, step, model, opt, sched):
    return C.save_checkpoint(tmp_path, step, model, opt, sched, extra={"position": step * 2})


def test_checkpoint_roundtrip_restores_everything(tmp_path):
    model = tiny_model(dropout=0.1)
    opt = T.make_optimizer(model, "adamw", 1e-2)
    sched = T.make_scheduler(opt, warmup=3)
    T.train_step(model, [collate(features(8))], opt, sched)
    path = _saved(tmp_path, 1, model, opt, sched)
    expected_next = torch.rand(4)  # the first random numbers after the checkpoint
    assert (tmp_path / "latest").read_text() == "checkpoint-00000001\n"
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "manifest.json", "model.safetensors",
                                                      "state.pt"]
    loaded = T5.from_pretrained(path)  # the weights are an ordinary HF-format checkpoint
    pairs = zip(model.state_dict().values(), loaded.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)

    other = tiny_model(seed=9, dropout=0.1)
    opt2 = T.make_optimizer(other, "adamw", 1e-2)
    sched2 = T.make_scheduler(opt2, warmup=3)
    state = C.load_checkpoint(C.latest_checkpoint(tmp_path), other, opt2, sched2)
    assert state["step"] == 1 and state["position"] == 2
    assert torch.equal(torch.rand(4), expected_next)  # the RNG continues where the checkpoint was taken
    pairs = zip(model.state_dict().values(), other.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert sched2.last_epoch == sched.last_epoch
    m_state, o_state = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert all(torch.equal(m_state[k]["exp_avg"], o_state[k]["exp_avg"]) for k in m_state)
    # the optimizer still points at the model's parameters (weights were loaded in place)
    assert {id(p) for g in opt2.param_groups for p in g["params"]} == {id(p) for p in other.parameters()}


@pytest.mark.parametrize("where", ["weights", "state", "rename"])
def test_crash_during_checkpoint_write_keeps_previous(tmp_path, monkeypatch, where):
    model = tiny_model()
    opt = T.make_optimizer(model, "adamw", 1e-2)
    sched = T.make_scheduler(opt, warmup=3)
    _saved(tmp_path, 1, model, opt, sched)
    T.train_step(model, [collate(features(8))], opt, sched)

    def boom(*args, **kwargs):
        raise OSError(f"simulated crash while writing ({where})")

    if where == "weights":
        monkeypatch.setattr(C, "save_weights", boom)
    elif where == "state":
        monkeypatch.setattr(torch, "save", boom)
    else:
        real_replace = C.os.replace

        def replace_dirs_fails(src, dst):  # the final rename of the directory fails; `latest` not reached
            if str(dst).endswith("checkpoint-00000002"):
                boom()
            return real_replace(src, dst)

        monkeypatch.setattr(C.os, "replace", replace_dirs_fails)
    with pytest.raises(OSError, match="simulated"):
        _saved(tmp_path, 2, model, opt, sched)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-00000001", "latest"]
    fresh = tiny_model()
    opt2 = T.make_optimizer(fresh, "adamw", 1e-2)
    state = C.load_checkpoint(C.latest_checkpoint(tmp_path), fresh, opt2, T.make_scheduler(opt2, warmup=3))
    assert state["step"] == 1


def test_latest_falls_back_and_stale_temporaries_are_removed(tmp_path):
    model = tiny_model()
    for step in (1, 2, 3):
        _saved(tmp_path, step, model, None, None)
    assert [p.name for p in C.list_checkpoints(tmp_path)] == ["checkpoint-00000002", "checkpoint-00000003"]
    (tmp_path / "latest").write_text("checkpoint-00000099\n")  # stale pointer
    assert C.latest_checkpoint(tmp_path).name == "checkpoint-00000003"
    (tmp_path / "latest").unlink()
    half = tmp_path / "checkpoint-00000004.tmp-abc"  # what a SIGKILL during a write leaves
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    assert C.latest_checkpoint(tmp_path).name == "checkpoint-00000003"
    _saved(tmp_path, 4, model, None, None)
    assert not half.exists()
    assert C.latest_checkpoint(tmp_path).name == "checkpoint-00000004"


# ----------------------------------------------------------------------------- the loop


def test_train_resume_in_process_is_bit_exact(tmp_path):
    rows = features(40)
    cfg = T.TrainConfig(lr=1e-2, warmup_steps=3, max_steps=10, batch_size=8, grad_accum=2, save_every=4,
                        log_every=1, progress=False)
    straight = tiny_model(dropout=0.1)
    history = T.train(straight, rows, collate, cfg, tmp_path / "a")
    assert [r["step"] for r in history] == list(range(1, 11))
    assert history[-1]["loss"] < history[0]["loss"]
    part = tiny_model(dropout=0.1)
    T.train(part, rows, collate, replace(cfg, max_steps=4), tmp_path / "b")
    # a run that got further than its last checkpoint before dying: its metrics lines past step 4 go
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "loss": 123.0}) + "\n")
    resumed = tiny_model(seed=1, dropout=0.1)
    T.train(resumed, rows, collate, cfg, tmp_path / "b", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    lines = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 11))
    assert [r["loss"] for r in lines] == pytest.approx([r["loss"] for r in history], rel=1e-6)


def test_time_budget_stops_and_checkpoints(tmp_path):
    cfg = T.TrainConfig(max_steps=10_000, batch_size=8, log_every=2, max_seconds=1.0, progress=False,
                        schedule="linear", warmup_steps=2)
    model = tiny_model()
    history = T.train(model, features(40), collate, cfg, tmp_path)
    steps = history[-1]["step"] if history else 0
    assert C.latest_checkpoint(tmp_path).name.count("0") > 0 and steps < 10_000
    state = torch.load(C.latest_checkpoint(tmp_path) / "state.pt", weights_only=True)
    assert state["step"] >= steps


def _cfg(**kw):
    defaults = dict(lr=1e-2, warmup_steps=2, max_steps=6, batch_size=8, save_every=2, log_every=1,
                    progress=False)
    return T.TrainConfig(**{**defaults, **kw})


def test_non_finite_numbers_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path):
    # lr = inf: NaN weights after step 1; the checkpoint of step 1 refuses them
    with pytest.raises(FloatingPointError, match=r"at step 1: \d+ weight tensors are not finite.*nothing"):
        T.train(tiny_model(), features(40), collate, _cfg(lr=float("inf"), save_every=1), tmp_path / "inf")
    assert C.list_checkpoints(tmp_path / "inf") == []
    # a blow-up at step 3 (simulated: the weights turn NaN while the batch is read): the loss of step 3
    model, calls = tiny_model(), []

    def poisoned_collate(rows):
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                model.lm_head.weight.fill_(float("nan"))
        return collate(rows)

    with pytest.raises(FloatingPointError, match=r"at step 3: the loss is nan.*last checkpoint is step 2"):
        T.train(model, features(40), poisoned_collate, _cfg(save_every=2), tmp_path / "blowup")
    good = C.latest_checkpoint(tmp_path / "blowup")
    assert good.name == "checkpoint-00000002" and not (tmp_path / "blowup" / "model.safetensors").exists()
    assert all(torch.isfinite(t).all() for t in T5.from_pretrained(good).state_dict().values())
    # the step itself refuses before touching the weights
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError):
        T.train_step(model, [collate(features(8))], torch.optim.SGD(model.parameters(), lr=1.0))
    pairs = zip(before, model.parameters(), strict=True)
    assert all(torch.equal(a.nan_to_num(), b.nan_to_num()) for a, b in pairs)


@pytest.mark.parametrize("damage", ["truncate", "flip", "state"])
def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, damage):
    rows = features(40)
    T.train(tiny_model(), rows, collate, _cfg(max_steps=4), tmp_path / "run")
    newest = tmp_path / "run" / "checkpoint-00000004"
    file = newest / ("state.pt" if damage == "state" else "model.safetensors")
    data = bytearray(file.read_bytes())
    if damage == "flip":  # same size, other bytes: only the checksum sees it
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    file.write_bytes(bytes(data))
    assert C.verify_checkpoint(newest) and not C.verify_checkpoint(tmp_path / "run" / "checkpoint-00000002")
    with pytest.warns(UserWarning, match="damaged checkpoint .*checkpoint-00000004"):
        T.train(tiny_model(seed=3), rows, collate, _cfg(max_steps=6), tmp_path / "run", resume=True)
    # resumed from step 2, ended where an uninterrupted run ends; the damaged copy was kept aside
    straight = tiny_model()
    T.train(straight, rows, collate, _cfg(max_steps=6), tmp_path / "straight")
    resumed = T5.from_pretrained(C.latest_checkpoint(tmp_path / "run"))
    pairs = zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert (tmp_path / "run" / "checkpoint-00000004.replaced-1" / file.name).read_bytes() == bytes(data)


def test_resume_with_another_optimizer_or_model_is_one_clear_error(tmp_path):
    rows = features(40)
    T.train(tiny_model(), rows, collate, _cfg(max_steps=2), tmp_path)
    with pytest.raises(C.ResumeError, match=r"optimizer AdamW \(this run: Adafactor\)"):
        T.train(tiny_model(), rows, collate, _cfg(optimizer="adafactor"), tmp_path, resume=True)
    torch.manual_seed(0)
    wider = T5(replace(tiny_model().config, d_ff=48))
    with pytest.raises(C.ResumeError, match=r"d_ff=32 \(this model: 48\)"):
        T.train(wider, rows, collate, _cfg(), tmp_path, resume=True)


def test_a_folder_with_another_run_is_refused_without_resume(tmp_path):
    T.train(tiny_model(), features(40), collate, _cfg(max_steps=2), tmp_path)
    with pytest.raises(FileExistsError, match="already holds the checkpoints of a run"):
        T.train(tiny_model(), features(40), collate, _cfg(max_steps=2), tmp_path)


def test_evaluate_callback_lands_in_the_metrics(tmp_path):
    calls = []

    def score(model):
        calls.append(model.training)
        return {"exact_match": 0.5}

    history = T.train(tiny_model(), features(40), collate, _cfg(log_every=4, eval_every=3), tmp_path,
                      evaluate=score)
    assert [r["step"] for r in history] == [3, 4, 6] and len(calls) == 2
    assert [r.get("exact_match") for r in history] == [0.5, None, 0.5]


# ----------------------------------------------------------------------------- decoding, metrics


def _noisy_model():
    model = tiny_model(vocab=40)
    with torch.no_grad():  # make the untrained model's greedy output non-trivial
        model.lm_head.weight.normal_(0, 1.0)
    return model


def test_greedy_decode_matches_full_recompute():
    model = _noisy_model()
    batch = collate(features(5))
    fast = M.greedy_decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=8)
    # the slow way: the whole prefix through the whole model at every step, no cache
    out = torch.full((5, 1), model.config.decoder_start_token_id)
    with torch.no_grad():
        for _ in range(fast.shape[1]):
            logits = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                  decoder_input_ids=out).logits
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    model.train()
    finished = (out[:, 1:] == 1).long().cumsum(1) - (out[:, 1:] == 1).long() > 0  # after EOS: pad
    assert torch.equal(fast[~finished], out[:, 1:][~finished]) and bool((fast[finished] == 0).all())
    assert fast.shape[0] == 5 and fast.shape[1] <= 8
    assert model.training  # the mode is restored


@pytest.mark.parametrize("start", [0, 3])
def test_greedy_decode_equals_generate_token_for_token(start):
    from t5edu.generate import generate

    model = _noisy_model()
    model.config.decoder_start_token_id = start  # both must follow the config
    batch = collate(features(6, seed=2))
    ours = M.greedy_decode(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=10)
    theirs = generate(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=10, num_beams=1)
    assert bool((theirs[:, 0] == start).all())
    assert torch.equal(ours, theirs[:, 1:])


def test_unwrap_takes_off_ddp_and_compile_wrappers():
    model = tiny_model()

    class Wrapper(torch.nn.Module):  # what DistributedDataParallel looks like from outside
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    assert T.unwrap(model) is model
    assert T.unwrap(Wrapper(model)) is model
    assert T.unwrap(torch.compile(Wrapper(model))) is model


def test_metrics():
    assert M.exact_match(["a b", " c", "x"], ["a  b", "c", "y"]) == pytest.approx(2 / 3)
    assert M.exact_match([], []) == 0.0
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        M.exact_match(["a", "b"], ["a"])
    same = M.rouge(["the cat sat"], ["the cat sat"])
    assert set(same) == {"rouge1", "rouge2", "rougeL"}
    assert all(v == pytest.approx(100.0) for v in same.values())
    assert M.rouge(["a b"], ["c d"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    # ROUGE-1 by hand: 3 of 3 predicted words in a 4-word reference: P 1, R 3/4, F1 6/7
    assert M.rouge(["the cat sat"], ["the cat sat down"])["rouge1"] == pytest.approx(100 * 6 / 7)
    assert M.bleu(["the small cat sat on the mat"], ["the small cat sat on the mat"]) == pytest.approx(100.0)
    assert M.bleu(["completely different words here"], ["the small cat sat on the mat"]) < 10


def test_evaluate_reports_per_task_and_rouge_on_the_same_scale():
    from t5edu.data import synthetic_tokenizer_corpus
    from t5edu.tokenizer import Tokenizer

    tok = Tokenizer.train(synthetic_tokenizer_corpus(n=200, prose=False), vocab_size=200)
    rows = [{"task": "copy", "inputs": "copy: cat dog", "targets": "cat dog"},
            {"task": "reverse", "inputs": "reverse: cat dog", "targets": "dog cat"}]
    model = T5(T5Config(vocab_size=tok.vocab_size, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4,
                        relative_attention_num_buckets=8, relative_attention_max_distance=16,
                        dropout_rate=0.0))
    report = M.evaluate(model, tok, rows, max_new_tokens=4, metrics=("exact_match", "rouge", "bleu"))
    assert set(report["per_task"]) == {"copy", "reverse"} and len(report["predictions"]) == 2
    for scores in [report, *report["per_task"].values()]:
        assert 0 <= scores["exact_match"] <= 1 and all(0 <= scores[k] <= 100 for k in ("rougeL", "bleu"))
    with pytest.raises(ValueError, match="unknown metric"):
        M.evaluate(model, tok, rows, metrics=("rouge_l",))


# ----------------------------------------------------------------------------- exercise checks


def _stub(*args, **kwargs):
    raise NotImplementedError("Your turn")


def _wrong_schedule(step, peak_lr, warmup):  # forgets to normalise by the warm-up
    return peak_lr * step / warmup if step < warmup else peak_lr / math.sqrt(step)


def _wrong_loss(logits, labels):  # averages over padding too
    log_probs = F.log_softmax(logits, dim=-1)
    return -log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).mean()


def _wrong_accumulation(model, micro_batches):  # mean of per-micro-batch means
    total = 0.0
    for batch in micro_batches:
        logits = model(batch["input_ids"])
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch["labels"].reshape(-1))
        (loss / len(micro_batches)).backward()
        total += loss.item() / len(micro_batches)
    return total


def _wrong_position(step, grad_accum, batches_per_epoch):  # forgets the accumulation
    return divmod(step, batches_per_epoch)


@pytest.mark.parametrize("check, solution, wrong", [
    (ch07.exercise_1, solutions.inverse_sqrt_lr, _wrong_schedule),
    (ch07.exercise_2, solutions.masked_cross_entropy, _wrong_loss),
    (ch07.exercise_3, solutions.accumulate_gradients, _wrong_accumulation),
    (ch07.exercise_4, solutions.resume_position, _wrong_position),
])
def test_exercise_checks(check, solution, wrong):
    assert check.run(solution).passed
    stub = check.run(_stub)
    assert not stub.passed and "not done yet" in stub.message
    bad = check.run(wrong)
    assert not bad.passed and "❌" in bad.message
    assert copy.copy(bad.message).count("Traceback") == 0
