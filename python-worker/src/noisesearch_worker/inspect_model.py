"""State-dict keys and shapes of any model the worker knows, built on the meta device (no weights allocated)."""
from __future__ import annotations

import torch

from .classifiers import CLASSIFIERS
from .sit import SIT_CONFIGS, SiT


def inspect(name: str) -> dict:
    with torch.device("meta"):
        if name in SIT_CONFIGS:
            net = SiT(SIT_CONFIGS[name])
        elif name in CLASSIFIERS:
            net = CLASSIFIERS[name]()
        else:
            raise KeyError(f"unknown model {name!r}; known: {sorted(SIT_CONFIGS) + sorted(CLASSIFIERS)}")
    state = net.state_dict()
    return {"state_dict": {k: list(v.shape) for k, v in state.items()},
            "num_parameters": sum(v.numel() for v in state.values())}
