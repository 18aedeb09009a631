"""Tensors kept on the worker between calls: per-client namespaces, handles, a TTL and a memory cap."""
from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

import torch


class ResourceExhausted(Exception):
    """A request would push the store past its memory cap (answered RESOURCE_EXHAUSTED, never OOM)."""


class NamespaceReleased(Exception):
    """The namespace was released while a call that writes into it was running: its outputs are dropped."""


class UnknownHandle(KeyError):
    def __init__(self, field_name: str, handle: str):
        super().__init__(handle)
        self.field_name = field_name
        self.handle = handle


@dataclass
class Entry:
    tensor: torch.Tensor
    recipe: object  # worker_pb2.Recipe
    nbytes: int
    last_used: float = field(default_factory=time.monotonic)


class TensorStore:
    def __init__(self, cap_bytes: int, ttl_seconds: float):
        self.cap_bytes = cap_bytes
        self.ttl_seconds = ttl_seconds
        self._spaces: dict[str, dict[str, Entry]] = {}
        # Bumped by release_all, so that a call that began before the release cannot refill the namespace.
        self._generations: dict[str, int] = {}
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        return self._used

    def ensure_room(self, nbytes: int) -> None:
        """Refuse before computing, so that a large request fails cleanly instead of running out of memory."""
        self.expire()
        if self._used + nbytes > self.cap_bytes:
            raise ResourceExhausted(
                f"tensor store would hold {self._used + nbytes} bytes, over its cap of {self.cap_bytes}: "
                "release handles or raise memory_cap_mb")

    def generation(self, namespace: str) -> int:
        return self._generations.get(namespace, 0)

    def put(self, namespace: str, tensor: torch.Tensor, recipe: object, generation: int | None = None) -> str:
        nbytes = tensor.element_size() * tensor.numel()
        with self._lock:
            if generation is not None and generation != self.generation(namespace):
                raise NamespaceReleased(f"namespace {namespace!r} was released while this call ran; its outputs are dropped")
            if self._used + nbytes > self.cap_bytes:
                raise ResourceExhausted(f"tensor store is full ({self._used} of {self.cap_bytes} bytes)")
            handle = secrets.token_hex(8)
            self._spaces.setdefault(namespace, {})[handle] = Entry(tensor, recipe, nbytes)
            self._used += nbytes
            return handle

    def get(self, namespace: str, handle: str, field_name: str) -> Entry:
        entry = self._spaces.get(namespace, {}).get(handle)
        if entry is None:
            raise UnknownHandle(field_name, handle)
        entry.last_used = time.monotonic()
        return entry

    def release(self, namespace: str, handles: list[str]) -> int:
        with self._lock:
            space = self._spaces.get(namespace, {})
            released = 0
            for h in handles:
                entry = space.pop(h, None)
                if entry is not None:
                    self._used -= entry.nbytes
                    released += 1
            return released

    def release_all(self, namespace: str) -> int:
        with self._lock:
            self._generations[namespace] = self.generation(namespace) + 1
            space = self._spaces.pop(namespace, {})
            self._used -= sum(e.nbytes for e in space.values())
            return len(space)

    def expire(self) -> int:
        cutoff = time.monotonic() - self.ttl_seconds
        with self._lock:
            dropped = 0
            for space in self._spaces.values():
                for h in [h for h, e in space.items() if e.last_used < cutoff]:
                    self._used -= space.pop(h).nbytes
                    dropped += 1
            return dropped
