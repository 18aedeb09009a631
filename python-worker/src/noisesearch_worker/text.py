"""Text conditions: prompt encoding with a per-(owner, prompt) cache.

The M candidates of one prompt, and every step of every search round over it, share one encoding:
the first request that names a prompt encodes it (all new prompts of a request in one batch), later
ones read the cache. The cache is an LRU bounded in entries; an entry is small next to the models
(FLUX: 512 x 4096 T5 states + a 768 CLIP vector, 4 MiB in bf16).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Sequence

import torch


class PromptCache:
    """LRU of encoded prompts keyed by (owner, prompt); `owner` is the model or verifier that encoded them."""

    def __init__(self, max_entries: int = 256):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Hashable, str], object] = OrderedDict()
        self._lock = threading.Lock()
        self.encoder_calls = 0     # batches sent to an encoder
        self.prompts_encoded = 0   # prompts those batches held
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, owner: Hashable, prompts: Sequence[str], encode: Callable[[list[str]], list]) -> list:
        """Values for `prompts` in order; the distinct ones not cached are encoded in one call of `encode`."""
        with self._lock:
            missing = []
            for p in prompts:
                if (owner, p) in self._entries:
                    self._entries.move_to_end((owner, p))
                elif p not in missing:
                    missing.append(p)
            self.hits += len(prompts) - sum(1 for p in prompts if p in missing)
            if missing:
                values = encode(missing)
                if len(values) != len(missing):
                    raise RuntimeError(f"encoder returned {len(values)} values for {len(missing)} prompts")
                self.encoder_calls += 1
                self.prompts_encoded += len(missing)
                fresh = dict(zip(missing, values))
                for p, v in fresh.items():
                    self._entries[(owner, p)] = v
            else:
                fresh = {}
            out = [fresh[p] if p in fresh else self._entries[(owner, p)] for p in prompts]
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return out


def load_tokenizer(path: Path, kind: str):
    """A tokenizer from a release folder, offline. `kind`: clip | t5 | bert."""
    from transformers import AutoTokenizer, BertTokenizer, CLIPTokenizer, T5TokenizerFast
    cls = {"clip": CLIPTokenizer, "t5": T5TokenizerFast, "bert": BertTokenizer}.get(kind, AutoTokenizer)
    return cls.from_pretrained(str(path), local_files_only=True)


class FluxTextEncoder:
    """FLUX's two text towers, as diffusers' FluxPipeline calls them.

    CLIP ViT-L/14 text model: 77 tokens padded to max length, its pooled output (pooled_projections);
    T5 v1.1 XXL encoder: 512 tokens padded to max length, its last hidden states (encoder_hidden_states).
    With `offload`, the towers live on the CPU and visit the device only to encode new prompts.
    """

    def __init__(self, clip_tokenizer, clip_model, t5_tokenizer, t5_model, device: torch.device,
                 dtype: torch.dtype, cache: PromptCache, owner: str, max_sequence_length: int = 512,
                 offload: bool = False):
        self.clip_tokenizer, self.clip_model = clip_tokenizer, clip_model.eval().requires_grad_(False)
        self.t5_tokenizer, self.t5_model = t5_tokenizer, t5_model.eval().requires_grad_(False)
        self.device, self.dtype, self.cache, self.owner = device, dtype, cache, owner
        self.max_sequence_length, self.offload = max_sequence_length, offload
        home = torch.device("cpu") if offload else device
        self.clip_model.to(device=home, dtype=dtype)
        self.t5_model.to(device=home, dtype=dtype)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for m in (self.clip_model, self.t5_model) for p in m.parameters())

    @torch.inference_mode()
    def _encode(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.offload:
            self.clip_model.to(self.device)
            self.t5_model.to(self.device)
        try:
            clip_ids = self.clip_tokenizer(prompts, padding="max_length", max_length=self.clip_tokenizer.model_max_length,
                                           truncation=True, return_tensors="pt").input_ids
            pooled = self.clip_model(clip_ids.to(self.device), output_hidden_states=False).pooler_output
            t5_ids = self.t5_tokenizer(prompts, padding="max_length", max_length=self.max_sequence_length,
                                       truncation=True, return_tensors="pt").input_ids
            states = self.t5_model(t5_ids.to(self.device), output_hidden_states=False)[0]
        finally:
            if self.offload:
                self.clip_model.to("cpu")
                self.t5_model.to("cpu")
        return [(states[i].to(self.dtype), pooled[i].to(self.dtype)) for i in range(len(prompts))]

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 states (N, L, D), CLIP pooled (N, P)) on the device, each prompt encoded at most once."""
        pairs = self.cache.get_many(self.owner, list(prompts), self._encode)
        return torch.stack([s for s, _ in pairs]), torch.stack([p for _, p in pairs])
