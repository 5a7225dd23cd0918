"""Chapter 05: from_pretrained / save_pretrained — formats, atomic writes, clear errors, safe loading."""

import json
import os
import pickle

import pytest
import torch

from t5edu import T5, T5Config
from t5edu.model import CheckpointError, read_state_dict

CFG = dict(vocab_size=90, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, dropout_rate=0.0)


def model(**kw):
    torch.manual_seed(0)
    return T5(T5Config(**{**CFG, **kw})).eval()


def logits(m):
    ids = torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]])
    with torch.no_grad():
        dec = torch.tensor([[0, 3], [0, 4]])
        return m(input_ids=ids, attention_mask=(ids != 0).long(), decoder_input_ids=dec).logits


@pytest.mark.parametrize("tied", [True, False])
def test_roundtrip(tmp_path, tied):
    m = model(tie_word_embeddings=tied, feed_forward_proj="relu" if tied else "gated-gelu")
    m.save_pretrained(tmp_path)
    # no temporary files left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    state = read_state_dict(tmp_path)
    assert ("lm_head.weight" in state) == (not tied)
    assert "encoder.embed_tokens.weight" not in state and "shared.weight" in state
    again = T5.from_pretrained(tmp_path)
    assert again.config == m.config and not again.training
    assert torch.equal(logits(again), logits(m))
    assert (again.lm_head.weight is again.shared.weight) == tied


def test_pytorch_model_bin_loads_with_weights_only(tmp_path):
    m = model()
    m.save_pretrained(tmp_path)
    state = read_state_dict(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert torch.equal(logits(T5.from_pretrained(tmp_path)), logits(m))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_malicious_pickle_is_refused(tmp_path):
    model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"shared.weight": _Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        T5.from_pretrained(tmp_path)


def test_one_error_lists_missing_unexpected_and_mismatched(tmp_path):
    model().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(d_ff=32, num_decoder_layers=3)  # wrong FFN width, one decoder block too many
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import load_file, save_file
    state = load_file(tmp_path / "model.safetensors")
    state["encoder.block.0.layer.0.SelfAttention.extra.weight"] = torch.zeros(2)
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        T5.from_pretrained(tmp_path)
    msg = str(info.value)
    assert "missing (" in msg and "decoder.block.2.layer.0.SelfAttention.q.weight" in msg
    assert "unexpected (1): encoder.block.0.layer.0.SelfAttention.extra.weight" in msg
    assert "wrong shape (" in msg
    assert "encoder.block.0.layer.1.DenseReluDense.wi.weight: checkpoint (24, 16), model (32, 16)" in msg


def test_harmless_keys_are_ignored(tmp_path):
    m = model()
    state = {k: v.clone() for k, v in m.state_dict().items()}  # with aliases and the tied head
    state["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = torch.zeros(32, 4)
    other = model()
    other.load_checkpoint_state(state)
    assert torch.equal(logits(other), logits(m))
    # only an alias of the embedding (some old checkpoints)
    state.pop("shared.weight")
    model().load_checkpoint_state(state)


def test_untied_head_in_file_wins_over_tie_flag(tmp_path):
    m = model(tie_word_embeddings=False)
    m.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(tie_word_embeddings=True, scale_decoder_outputs=False)  # what transformers 5 writes
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    again = T5.from_pretrained(tmp_path)
    assert not again.config.tie_word_embeddings and not again.config.scale_decoder_outputs
    assert torch.equal(logits(again), logits(m))


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    m = model()
    m.save_pretrained(tmp_path)
    before = (tmp_path / "model.safetensors").read_bytes()
    import safetensors.torch

    def broken(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with torch.no_grad():
        m.shared.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        m.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_missing_files_and_offline_hub(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text(json.dumps(T5Config(**CFG).to_dict()))
    with pytest.raises(FileNotFoundError, match=r"holds no model\.safetensors"):
        T5.from_pretrained(tmp_path)
    with pytest.raises(NotADirectoryError):
        T5.from_pretrained(tmp_path / "config.json")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("huggingface_hub")
    # offline, a hub-like name that is not cached is reported as a missing local folder
    with pytest.raises(FileNotFoundError, match=r"checkpoint folder 't5edu-test/definitely-not-cached-model' "
                                                r"does not exist \(offline, HF_HUB_OFFLINE=1"):
        T5.from_pretrained("t5edu-test/definitely-not-cached-model")


def test_bad_token_ids_fail_clearly():
    m = model()
    with pytest.raises(ValueError, match="input_ids contains token id 90 outside the vocabulary"):
        m(input_ids=torch.tensor([[1, 90]]), decoder_input_ids=torch.tensor([[0]]))
    with pytest.raises(ValueError, match="decoder_input_ids contains token id -3"):
        m(input_ids=torch.tensor([[1, 2]]), decoder_input_ids=torch.tensor([[0, -3]]))
    with pytest.raises(ValueError, match="labels must be token ids"):
        m(input_ids=torch.tensor([[1, 2]]), labels=torch.tensor([[5, 95]]))
    out = m(input_ids=torch.tensor([[1, 2]]), labels=torch.tensor([[5, -100]]))
    assert torch.isfinite(out.loss)


def test_parameter_count_t5_small():
    with torch.device("meta"):
        assert T5(T5Config.preset("t5-small")).num_parameters() == 60_506_624
        assert T5(T5Config.preset("t5-v1_1-small")).num_parameters() == 76_961_152


def test_untied_head_init_is_fan_in():
    m = T5(T5Config(vocab_size=500, d_model=64, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                    tie_word_embeddings=False, feed_forward_proj="gated-gelu"))
    assert abs(m.lm_head.weight.std().item() * 64 ** 0.5 - 1) < 0.05
    assert abs(m.shared.weight.std().item() - 1) < 0.05
