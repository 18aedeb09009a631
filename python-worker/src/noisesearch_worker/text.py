"""Text conditions: prompt encoding with a per-(owner, prompt) cache.

The M candidates of one prompt, and every step of every search round over it, share one encoding:
the first request that names a prompt encodes it (all new prompts of a request in one batch), later
ones read the cache. The cache is an LRU bounded in entries; an entry is small next to the models
(FLUX: 512 x 4096 T5 states + a 768 CLIP vector, 4 MiB in bf16).
"""
from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Sequence

import torch

from .models import run_here


class _Pending:
    """A prompt one call is encoding: the others that need it wait for its value instead of encoding it again."""

    def __init__(self):
        self.done = threading.Event()
        self.value: object = None
        self.ok = False


class PromptCache:
    """LRU of encoded prompts keyed by (owner, prompt); `owner` is the model or verifier that encoded them.

    The encoder runs outside the cache's lock, so the new prompts of concurrent calls reach the encoder's scheduler
    together and can share its micro-batches; a prompt that one call is encoding is waited for by the others."""

    def __init__(self, max_entries: int = 256):
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Hashable, str], object] = OrderedDict()
        self._pending: dict[tuple[Hashable, str], _Pending] = {}
        self._lock = threading.Lock()
        self.encoder_calls = 0     # batches sent to an encoder
        self.prompts_encoded = 0   # prompts those batches held
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, owner: Hashable, prompts: Sequence[str], encode: Callable[[list[str]], list]) -> list:
        """Values for `prompts` in order; the distinct ones neither cached nor being encoded by another call are
        encoded in one call of `encode`."""
        prompts = list(prompts)
        found: dict[str, object] = {}
        encoded_here: set[str] = set()
        while len(found) < len(set(prompts)):  # again only if another call's encoding of a prompt failed
            mine: list[str] = []
            theirs: dict[str, _Pending] = {}
            with self._lock:
                for p in prompts:
                    key = (owner, p)
                    if p in found or p in mine or p in theirs:
                        continue
                    if key in self._entries:
                        self._entries.move_to_end(key)
                        found[p] = self._entries[key]
                    elif key in self._pending:
                        theirs[p] = self._pending[key]
                    else:
                        mine.append(p)
                        self._pending[key] = _Pending()
            if mine:
                self._encode_mine(owner, mine, encode, found)
                encoded_here.update(mine)
            for p, pending in theirs.items():
                pending.done.wait()
                if pending.ok:
                    found[p] = pending.value
        with self._lock:
            self.hits += sum(1 for p in prompts if p not in encoded_here)
        return [found[p] for p in prompts]

    def _encode_mine(self, owner: Hashable, mine: list[str], encode: Callable[[list[str]], list], found: dict) -> None:
        values = None
        try:
            values = encode(mine)
            if len(values) != len(mine):
                raise RuntimeError(f"encoder returned {len(values)} values for {len(mine)} prompts")
        finally:
            with self._lock:
                ok = values is not None and len(values) == len(mine)
                if ok:
                    self.encoder_calls += 1
                    self.prompts_encoded += len(mine)
                for i, p in enumerate(mine):
                    pending = self._pending.pop((owner, p))
                    if ok:
                        pending.value, pending.ok = values[i], True
                        self._entries[(owner, p)] = values[i]
                        found[p] = values[i]
                    pending.done.set()
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)


def load_tokenizer(path: Path, kind: str):
    """A tokenizer from a release folder, offline. `kind`: clip | t5 | bert."""
    from transformers import AutoTokenizer, BertTokenizer, CLIPTokenizer, T5TokenizerFast
    cls = {"clip": CLIPTokenizer, "t5": T5TokenizerFast, "bert": BertTokenizer}.get(kind, AutoTokenizer)
    return cls.from_pretrained(str(path), local_files_only=True)


class FluxTextEncoder:
    """FLUX's two text towers, as diffusers' FluxPipeline calls them.

    CLIP ViT-L/14 text model: 77 tokens padded to max length, its pooled output (pooled_projections);
    T5 v1.1 XXL encoder: 512 tokens padded to max length, its last hidden states (encoder_hidden_states).
    Each tower's rows run in fixed micro-batches of `micro_batch` prompts, through `runner` (the worker's compute
    loop, where concurrent calls' new prompts share them) or here (models.run_here). The default of 1 gives a
    request's one new prompt the bits it had when a request's new prompts were encoded as one batch.
    With `offload`, the towers live on the CPU and visit the device only for their forwards.
    """

    def __init__(self, clip_tokenizer, clip_model, t5_tokenizer, t5_model, device: torch.device,
                 dtype: torch.dtype, cache: PromptCache, owner: str, max_sequence_length: int = 512,
                 offload: bool = False, micro_batch: int = 1):
        if micro_batch < 1:
            raise ValueError(f"text_micro_batch: must be >= 1, got {micro_batch}")
        self.clip_tokenizer, self.clip_model = clip_tokenizer, clip_model.eval().requires_grad_(False)
        self.t5_tokenizer, self.t5_model = t5_tokenizer, t5_model.eval().requires_grad_(False)
        self.device, self.dtype, self.cache, self.owner = device, dtype, cache, owner
        self.max_sequence_length, self.offload, self.micro_batch = max_sequence_length, offload, micro_batch
        self.runner: Callable | None = None  # set by the worker's Compute (run_net); None: models.run_here
        home = torch.device("cpu") if offload else device
        self.clip_model.to(device=home, dtype=dtype)
        self.t5_model.to(device=home, dtype=dtype)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for m in (self.clip_model, self.t5_model) for p in m.parameters())

    @contextlib.contextmanager
    def _visiting(self, tower: torch.nn.Module):
        if self.offload:
            tower.to(self.device)
        try:
            yield
        finally:
            if self.offload:
                tower.to("cpu")

    def clip_rows(self, ids: torch.Tensor) -> torch.Tensor:
        with self._visiting(self.clip_model):
            return self.clip_model(ids.to(self.device), output_hidden_states=False).pooler_output

    def t5_rows(self, ids: torch.Tensor) -> torch.Tensor:
        with self._visiting(self.t5_model):
            return self.t5_model(ids.to(self.device), output_hidden_states=False)[0]

    @torch.inference_mode()
    def _encode(self, prompts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        run = self.runner or run_here
        clip_ids = self.clip_tokenizer(prompts, padding="max_length", max_length=self.clip_tokenizer.model_max_length,
                                       truncation=True, return_tensors="pt").input_ids
        t5_ids = self.t5_tokenizer(prompts, padding="max_length", max_length=self.max_sequence_length,
                                   truncation=True, return_tensors="pt").input_ids
        pooled = run(self.clip_rows, self.micro_batch, clip_ids, exact=True, name=f"{self.owner} CLIP text tower")
        states = run(self.t5_rows, self.micro_batch, t5_ids, exact=True, name=f"{self.owner} T5 text tower")
        return [(states[i].to(self.dtype), pooled[i].to(self.dtype)) for i in range(len(prompts))]

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(T5 states (N, L, D), CLIP pooled (N, P)) on the device, each prompt encoded at most once."""
        pairs = self.cache.get_many(self.owner, list(prompts), self._encode)
        return torch.stack([s for s, _ in pairs]), torch.stack([p for _, p in pairs])
