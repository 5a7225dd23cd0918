"""Chapters 04-05: bad input to T5Config, T5.from_pretrained and T5.forward gives one clear error each:
the right exception class, and a message that names the file or argument and the problem."""

import json

import pytest
import torch

from t5edu import T5, T5Config
from t5edu.config import ConfigError, read_config
from t5edu.model import CheckpointError

CFG = dict(vocab_size=90, d_model=16, d_kv=4, d_ff=24, num_layers=2, num_heads=4, dropout_rate=0.0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return T5(T5Config(**CFG)).eval()


@pytest.fixture
def folder(tmp_path, model):
    path = tmp_path / "demo-model"
    model.save_pretrained(path)
    return path


def write_config(folder, **changes):
    (folder / "config.json").write_text(json.dumps({**CFG, **changes}))


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def shard_without_weight_map(folder):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"metadata": {"total_size": 1}}')


def shard_index_not_json(folder):
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {')


# (what is broken, how to break the folder, exception class, message fragments)
BROKEN_FOLDERS = [
    ("empty weights", lambda f: (f / "model.safetensors").write_bytes(b""),
     CheckpointError, ["model.safetensors is not a readable safetensors file (0 bytes", "empty or truncated"],
     ),
    ("truncated weights", lambda f: truncate(f / "model.safetensors"),
     CheckpointError, ["model.safetensors is not a readable safetensors file", "empty or truncated"]),
    ("config not JSON", lambda f: (f / "config.json").write_text("d_model: 16\n"),
     ConfigError, ["config.json is not valid JSON", "line 1, column 1"]),
    ("config empty", lambda f: (f / "config.json").write_text(""),
     ConfigError, ["config.json is empty"]),
    ("config not an object", lambda f: (f / "config.json").write_text("[16, 4]"),
     ConfigError, ["config.json: a T5 config must be a JSON object of fields, got list"]),
    ("dropout as a string", lambda f: write_config(f, dropout_rate="0.1"),
     ConfigError, ["config.json: T5Config.dropout_rate must be a number in [0, 1), got '0.1'"]),
    ("null size", lambda f: write_config(f, d_model=None),
     ConfigError, ["config.json: T5Config.d_model must be a positive integer, got None"]),
    ("boolean size", lambda f: write_config(f, num_heads=True),
     ConfigError, ["config.json: T5Config.num_heads must be a positive integer, got True"]),
    ("flag as a string", lambda f: write_config(f, tie_word_embeddings="no"),
     ConfigError, ["config.json: T5Config.tie_word_embeddings must be true or false, got 'no'"]),
    ("no config.json", lambda f: (f / "config.json").unlink(),
     FileNotFoundError, ["has no config.json, so it is not a T5 checkpoint folder"]),
    ("index without weight_map", shard_without_weight_map,
     CheckpointError, ['model.safetensors.index.json must be a JSON object with a "weight_map"']),
    ("index not JSON", shard_index_not_json,
     CheckpointError, ['model.safetensors.index.json must be a JSON object with a "weight_map"']),
]


@pytest.mark.parametrize("case", BROKEN_FOLDERS, ids=[c[0] for c in BROKEN_FOLDERS])
def test_broken_checkpoint_folder(folder, case):
    _, damage, error, fragments = case
    damage(folder)
    with pytest.raises(error) as info:
        T5.from_pretrained(folder)
    message = str(info.value)
    assert str(folder) in message  # names the file (or folder)
    for fragment in fragments:
        assert fragment in message, message
    error = info.value  # no chained traceback from json or safetensors internals
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None)


@pytest.mark.parametrize("name", ["./checkpoints/demo-modle", "{tmp}/demo-modle", "{tmp}/demo-modle/"])
def test_typo_in_local_path(folder, name, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # even online, a path is never sent to the hub
    name = name.format(tmp=folder.parent)
    with pytest.raises(FileNotFoundError) as info:
        T5.from_pretrained(name)
    message = str(info.value)
    assert "does not exist" in message and "hub" not in message.lower() and "repo" not in message.lower()
    if name.startswith(str(folder.parent)):
        assert f"did you mean {str(folder)!r}?" in message


def test_typo_with_existing_parent_folder(folder, monkeypatch):
    monkeypatch.chdir(folder.parent.parent)
    name = f"{folder.parent.name}/demo-modle"  # 'parent/name' looks like a hub id, but the parent exists here
    with pytest.raises(FileNotFoundError, match=f"checkpoint folder '{name}' does not exist; did you mean"):
        T5.from_pretrained(name)


def test_offline_hub_id_is_a_missing_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pytest.importorskip("huggingface_hub")
    with pytest.raises(FileNotFoundError, match=r"'no-such-user/no-such-model' does not exist \(offline"):
        T5.from_pretrained("no-such-user/no-such-model")


def test_read_config_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json: no such file"):
        read_config(tmp_path / "config.json")
    (tmp_path / "config.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match=r"config\.json is not a text file"):
        read_config(tmp_path / "config.json")


def ids(*rows):
    return torch.tensor(rows)


DEC = ids([0, 3], [0, 4])
# (what is wrong, keyword arguments of T5.forward, message fragment)
BAD_FORWARD = [
    ("mask batch too small", dict(input_ids=ids([5, 6, 1], [7, 1, 0]), attention_mask=torch.ones(1, 3),
                                  decoder_input_ids=DEC),
     "attention_mask has shape (1, 3) but input_ids has shape (2, 3)"),
    ("mask too long", dict(input_ids=ids([5, 6, 1], [7, 1, 0]), attention_mask=torch.ones(2, 4),
                           decoder_input_ids=DEC),
     "attention_mask has shape (2, 4) but input_ids has shape (2, 3)"),
    ("1-D input ids", dict(input_ids=torch.tensor([5, 6, 1]), decoder_input_ids=DEC[:1]),
     "input_ids must be a 2-D tensor (batch, length), got shape (3,)"),
    ("empty batch", dict(input_ids=torch.zeros(0, 3, dtype=torch.long), decoder_input_ids=DEC),
     "input_ids is empty (shape (0, 3))"),
    ("empty sequences", dict(input_ids=torch.zeros(2, 0, dtype=torch.long), decoder_input_ids=DEC),
     "input_ids is empty (shape (2, 0))"),
    ("1-D decoder ids", dict(input_ids=ids([5, 6, 1]), decoder_input_ids=torch.tensor([0, 3])),
     "decoder_input_ids must be a 2-D tensor (batch, length), got shape (2,)"),
    ("decoder batch differs", dict(input_ids=ids([5, 6, 1]), decoder_input_ids=DEC),
     "decoder_input_ids has batch size 2 but encoder_hidden_states has 1"),
    ("decoder mask length", dict(input_ids=ids([5, 6, 1], [7, 1, 0]), decoder_input_ids=DEC,
                                 decoder_attention_mask=torch.ones(2, 3)),
     "decoder_attention_mask has shape (2, 3) but the decoder input (cached positions included) has shape "
     "(2, 2)"),
]


@pytest.mark.parametrize("case", BAD_FORWARD, ids=[c[0] for c in BAD_FORWARD])
def test_bad_forward_input(model, case):
    _, kwargs, fragment = case
    with pytest.raises(ValueError) as info:
        model(**kwargs)
    assert fragment in str(info.value), str(info.value)


def test_mask_with_encoder_states_is_checked(model):
    states = model.encode(ids([5, 6, 1], [7, 1, 0]))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\) but encoder_hidden_states has"):
        model(encoder_hidden_states=states, attention_mask=torch.ones(2, 4), decoder_input_ids=DEC)


def test_good_input_still_works(model):
    out = model(input_ids=ids([5, 6, 1], [7, 1, 0]), attention_mask=ids([1, 1, 1], [1, 1, 0]),
                decoder_input_ids=DEC, decoder_attention_mask=torch.ones(2, 2))
    assert out.logits.shape == (2, 2, 90)
