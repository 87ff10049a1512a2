"""The character tokenizer and the tiny Llama: round trips, special ids, size, save/load."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlexp.data.tasks.base import DEFAULT_ALPHABET
from rlexp.models.tiny import build_tiny_llama, default_intermediate_size
from rlexp.models.tokenizer import build_char_tokenizer

TEXT = "47+18=65,65+93=158####-158\n 3*2"


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def test_roundtrip_and_special_ids(tok):
    ids = tok(TEXT)["input_ids"]
    assert len(ids) == len(TEXT)  # one token per character, nothing added
    assert tok.decode(ids) == TEXT
    specials = (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id)
    assert specials == (0, 1, 2, 3)
    assert len(tok) == 4 + len(DEFAULT_ALPHABET)
    assert tok("1", add_special_tokens=True)["input_ids"] == tok("1")["input_ids"]


def test_caller_adds_bos_eos_once(tok):
    ids = [tok.bos_token_id, *tok("1+2=")["input_ids"], *tok("3")["input_ids"], tok.eos_token_id]
    assert ids.count(tok.bos_token_id) == 1 and ids.count(tok.eos_token_id) == 1
    assert tok.decode(ids, skip_special_tokens=True) == "1+2=3"
    assert tok.decode(ids) == "<bos>1+2=3<eos>"


def test_unknown_chars_and_padding(tok):
    assert tok("a1")["input_ids"] == [tok.unk_token_id, tok("1")["input_ids"][0]]
    right = tok(["1", "22"], padding=True)["input_ids"]
    assert right[0] == [tok("1")["input_ids"][0], tok.pad_token_id]
    left = build_char_tokenizer(padding_side="left")(["1", "22"], padding=True)["input_ids"]
    assert left[0][0] == tok.pad_token_id


def test_tokenizer_save_load(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded(TEXT)["input_ids"] == tok(TEXT)["input_ids"]
    assert loaded.decode(tok(TEXT)["input_ids"]) == TEXT
    assert loaded.get_vocab() == tok.get_vocab()
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (1, 2, 0)
    assert loaded.padding_side == "right"


def test_tiny_llama_size_and_ids(tok):
    model = build_tiny_llama(tok)
    n = sum(p.numel() for p in model.parameters())
    assert 0.5e6 <= n <= 2e6
    assert default_intermediate_size(128) == 352
    assert model.config.vocab_size == len(tok)
    for cfg in (model.config, model.generation_config):
        assert (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) == (1, 2, 0)


def test_tiny_llama_seeded(tok):
    state = torch.random.get_rng_state()
    a, b = build_tiny_llama(tok, seed=3), build_tiny_llama(tok, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    c = build_tiny_llama(tok, seed=4)
    assert not torch.equal(a.model.embed_tokens.weight, c.model.embed_tokens.weight)


def test_tiny_llama_save_load(tok, tmp_path):
    model = build_tiny_llama(tok, hidden_size=64, num_layers=2, num_kv_heads=2).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    x = torch.tensor([[tok.bos_token_id, *tok("12+34=")["input_ids"]]])
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    assert loaded.generation_config.eos_token_id == tok.eos_token_id
