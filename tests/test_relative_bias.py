"""Chapter 03: bucket function (bit-exact with Hugging Face for every distance in [-300, 300]), the table."""

import pytest
import torch

from t5edu.relative_bias import RelativePositionBias, relative_position_bucket

SETTINGS = [(32, 128), (16, 20), (64, 256), (8, 50), (32, 64), (10, 30)]


def test_hand_values():
    rel = torch.tensor([-200, -128, -127, -20, -8, -7, -1, 0, 1, 7, 8, 20, 200])
    assert relative_position_bucket(rel, True).tolist() == [15, 15, 15, 10, 8, 7, 1, 0, 17, 23, 24, 26, 31]
    assert relative_position_bucket(rel, False).tolist() == [31, 31, 31, 17, 8, 7, 1, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", SETTINGS)
def test_range_and_monotone(bidirectional, num_buckets, max_distance):
    rel = torch.arange(-300, 301)
    b = relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    assert b.min() >= 0 and b.max() < num_buckets
    left = b[rel <= 0].flip(0)
    assert (left.diff() >= 0).all()


def test_table_bias_shape_offset_and_diagonals():
    torch.manual_seed(0)
    table = RelativePositionBias(num_heads=3, num_buckets=16, max_distance=40, bidirectional=False)
    torch.nn.init.normal_(table.weight)
    bias = table(6, 9)
    assert bias.shape == (1, 3, 6, 9)
    assert torch.equal(bias[0, :, 1:, 1:], bias[0, :, :-1, :-1])
    assert torch.equal(table(2, 9, offset=7), table(9, 9)[:, :, 7:])
    assert list(table.state_dict()) == ["weight"]


def _hf():
    """transformers and its T5Attention class, or skip the test when transformers is missing."""
    transformers = pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5Attention

    return transformers, T5Attention


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("num_buckets,max_distance", SETTINGS)
def test_bucket_equals_hf_for_every_distance(bidirectional, num_buckets, max_distance):
    HFAttention = _hf()[1]
    rel = torch.arange(-300, 301)
    assert rel.numel() == 601
    ours = relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    ref = HFAttention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=num_buckets,
                                                 max_distance=max_distance)
    assert torch.equal(ours, ref)
    # also as a 2-D (query, key) matrix, as the models use it
    rel2 = torch.arange(300)[None, :] - torch.arange(300)[:, None]
    assert torch.equal(relative_position_bucket(rel2, bidirectional, num_buckets, max_distance),
                       HFAttention._relative_position_bucket(rel2, bidirectional, num_buckets, max_distance))


@pytest.mark.parametrize("is_decoder", [False, True])
def test_compute_bias_equals_hf(is_decoder):
    torch.manual_seed(0)
    transformers, HFAttention = _hf()
    cfg = transformers.T5Config(d_model=16, num_heads=4, d_kv=4, relative_attention_num_buckets=24,
                                relative_attention_max_distance=60, is_decoder=is_decoder,
                                attn_implementation="eager")
    hf = HFAttention(cfg, has_relative_attention_bias=True, layer_idx=0)
    torch.nn.init.normal_(hf.relative_attention_bias.weight)
    ours = RelativePositionBias(4, 24, 60, bidirectional=not is_decoder)
    ours.weight.data.copy_(hf.relative_attention_bias.weight.data)
    assert torch.equal(ours(70, 90), hf.compute_bias(70, 90))
    assert torch.equal(ours(1, 31, offset=30), hf.compute_bias(1, 31, past_seen_tokens=30))
