"""Prompt encoding: tokenizers on known strings, and one encoding per (model, prompt) for the M candidates."""
import threading
import time

import pytest
import torch

from noisesearch_worker import flux
from noisesearch_worker.sampling import initial_noises
from noisesearch_worker.text import PromptCache
from tiny_models import (BERT_VOCAB, TINY_AE, TINY_FLUX, bert_tokenizer, clip_tokenizer, flux_parts, flux_spec,
                         save_flux_release, t5_tokenizer)


def test_tiny_tokenizers_on_known_strings(tmp_path):
    clip = clip_tokenizer()
    vocab = clip.get_vocab()
    ids = clip("A cat.", padding="max_length", max_length=8, truncation=True).input_ids
    # lower-cased, "cat" merged to one word-final token, BOS/EOS around, padded with EOS (CLIP pads with <|endoftext|>)
    assert ids == [0, vocab["a</w>"], vocab["cat</w>"], vocab[".</w>"], 1, 1, 1, 1]
    t5 = t5_tokenizer()
    v5 = t5.get_vocab()
    enc = t5("a red car", padding="max_length", max_length=6, truncation=True).input_ids
    assert enc == [v5["\u2581a"], v5["\u2581red"], v5["\u2581car"], 1, 0, 0]  # </s> = 1 then <pad> = 0
    # saved and reloaded offline by the worker's loader: same ids
    from noisesearch_worker.text import load_tokenizer
    clip.save_pretrained(str(tmp_path / "tokenizer"))
    t5.save_pretrained(str(tmp_path / "tokenizer_2"))
    assert load_tokenizer(tmp_path / "tokenizer", "clip")("A cat.").input_ids == clip("A cat.").input_ids
    assert load_tokenizer(tmp_path / "tokenizer_2", "t5")("a red car").input_ids == t5("a red car").input_ids


def test_tiny_bert_tokenizer_tokenizes_words_and_the_worker_reloads_it(tmp_path):
    """ImageReward's tokenizer (bert-base-uncased + BLIP's [DEC] and [ENC]) on known strings, from the saved folder."""
    from noisesearch_worker.paper_verifiers import blip_tokenizer
    from noisesearch_worker.text import load_tokenizer
    tok = bert_tokenizer(tmp_path / "bert-base-uncased")
    vid = {w: i for i, w in enumerate(BERT_VOCAB)}
    assert len(tok) == len(BERT_VOCAB) and tok.get_vocab() == vid  # every line of vocab.txt, ids = line numbers
    ids = tok("A photo of a Cat.", padding="max_length", max_length=10, truncation=True).input_ids
    # lower-cased, one token per known word, [CLS] ... [SEP], then [PAD] = 0
    assert ids == [vid["[CLS]"], vid["a"], vid["photo"], vid["of"], vid["a"], vid["cat"], vid["."], vid["[SEP]"], 0, 0]
    assert tok.tokenize("cats zebra") == ["cat", "##s", "z", "##e", "##b", "##r", "##a"]  # WordPiece, no [UNK]
    assert tok.tokenize("cat\u00e9!") == ["cat", "##e", "[UNK]"]  # accents stripped; "!" is not in the vocab
    reloaded = load_tokenizer(tmp_path / "bert-base-uncased", "bert")
    assert reloaded("a red car depicts").input_ids == tok("a red car depicts").input_ids == [
        vid["[CLS]"], vid["a"], vid["red"], vid["car"], vid["depicts"], vid["[SEP]"]]
    blip = blip_tokenizer(tmp_path / "bert-base-uncased")  # BLIP's init_tokenizer: [DEC] then [ENC] after the vocab
    assert len(blip) == len(BERT_VOCAB) + 2
    assert blip.bos_token_id == len(BERT_VOCAB) and blip.convert_tokens_to_ids("[ENC]") == len(BERT_VOCAB) + 1
    assert blip("a dog").input_ids == [vid["[CLS]"], vid["a"], vid["dog"], vid["[SEP]"]]


def test_prompt_cache_encodes_each_new_prompt_once_in_one_batch():
    cache = PromptCache(max_entries=3)
    seen = []

    def enc(ps):
        seen.append(list(ps))
        return [p.upper() for p in ps]
    assert cache.get_many("m", ["a", "b", "a", "a"], enc) == ["A", "B", "A", "A"]
    assert cache.get_many("m", ["b", "a"], enc) == ["B", "A"]
    assert seen == [["a", "b"]] and cache.encoder_calls == 1 and cache.prompts_encoded == 2
    assert cache.get_many("other-model", ["a"], enc) == ["A"] and seen[-1] == ["a"]  # keyed per (model, prompt)
    cache.get_many("m", ["c", "d"], enc)  # over 3 entries: the least recently used go first
    assert len(cache) == 3 and ("m", "a") not in cache._entries and ("m", "d") in cache._entries


def test_a_prompt_another_call_is_encoding_is_waited_for_not_encoded_twice():
    cache, seen = PromptCache(), []
    entered, release = threading.Event(), threading.Event()

    def slow(ps):
        seen.append(list(ps))
        entered.set()
        assert release.wait(30)
        return [p.upper() for p in ps]
    first = threading.Thread(target=lambda: cache.get_many("m", ["a"], slow))
    first.start()
    assert entered.wait(30)
    got = []

    def quick(ps):
        seen.append(list(ps))
        return [p.upper() for p in ps]
    second = threading.Thread(target=lambda: got.append(cache.get_many("m", ["a", "b"], quick)))
    second.start()  # encodes "b" itself (outside the lock, while the first call encodes "a"), then waits for "a"
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(seen) == 2 and not got  # "b" encoded beside the first call; "a" not yet there: the second one waits
    release.set()
    first.join()
    second.join()
    assert got == [["A", "B"]] and sorted(map(tuple, seen)) == [("a",), ("b",)]


def test_a_failed_encoding_leaves_its_prompts_to_the_next_caller():
    cache = PromptCache()

    def broken(ps):
        raise RuntimeError("device lost")
    with pytest.raises(RuntimeError, match="device lost"):
        cache.get_many("m", ["a"], broken)
    assert cache.get_many("m", ["a"], lambda ps: [p.upper() for p in ps]) == ["A"] and not cache._pending


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory):
    root = save_flux_release(tmp_path_factory.mktemp("flux"), flux_parts(seed=3))
    flux.FLUX_CONFIGS["flux-tiny"], flux.FLUX_AE_CONFIGS["flux-tiny-ae"] = TINY_FLUX, TINY_AE
    try:
        yield flux.load_flux_model(flux_spec(root), root, torch.device("cpu"), torch.float32, 4)
    finally:
        flux.FLUX_CONFIGS.pop("flux-tiny", None)
        flux.FLUX_AE_CONFIGS.pop("flux-tiny-ae", None)


def test_m_candidates_of_one_prompt_encode_it_once(tiny_flux):
    m = tiny_flux
    calls = {"clip": 0, "t5": 0}
    h1 = m.text.clip_model.register_forward_hook(lambda *a: calls.__setitem__("clip", calls["clip"] + 1))
    h2 = m.text.t5_model.register_forward_hook(lambda *a: calls.__setitem__("t5", calls["t5"] + 1))
    try:
        x = initial_noises(list(range(8)), m.sample_shape)  # M = 8 candidates of one prompt
        v = m.velocity_fn(["a photo of a dog"] * 8, 3.5)
        v(x, 1.0)
        v(x, 0.5)
        m.velocity_fn(["a photo of a dog"] * 8, 3.5)(x, 0.3)  # a later round of the search
        assert calls == {"clip": 1, "t5": 1}
        states, pooled = m.text.encode(["a photo of a dog", "a cat"])
        assert states.shape == (2, 512, 32) and pooled.shape == (2, 32)
        assert calls == {"clip": 2, "t5": 2}  # only the new prompt was encoded
    finally:
        h1.remove()
        h2.remove()
    # the cached encoding is the one FluxPipeline computes
    from diffusers import FluxPipeline
    pipe = FluxPipeline(scheduler=None, vae=None, text_encoder=m.text.clip_model, tokenizer=m.text.clip_tokenizer,
                        text_encoder_2=m.text.t5_model, tokenizer_2=m.text.t5_tokenizer, transformer=None)
    ref_states, ref_pooled, _ = pipe.encode_prompt(["a photo of a dog", "a cat"], None, device=torch.device("cpu"))
    assert torch.equal(states, ref_states) and torch.equal(pooled, ref_pooled)


def test_offloaded_text_encoders_stay_on_the_cpu_between_encodings(tiny_flux):
    m = tiny_flux
    from noisesearch_worker.text import FluxTextEncoder
    enc = FluxTextEncoder(m.text.clip_tokenizer, m.text.clip_model, m.text.t5_tokenizer, m.text.t5_model,
                          torch.device("cpu"), torch.float32, PromptCache(), owner="x", offload=True)
    s, p = enc.encode(["a cat"])
    assert s.shape == (1, 512, 32) and next(enc.t5_model.parameters()).device.type == "cpu"
