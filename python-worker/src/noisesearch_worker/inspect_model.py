"""State-dict keys and shapes of any model the worker knows, built on the meta device (no weights allocated)."""
from __future__ import annotations

import torch

from .classifiers import CLASSIFIERS
from .sit import SIT_CONFIGS, SiT

FLUX_NAMES = ("flux-dev", "flux-ae")


def inspect(name: str) -> dict:
    if name in FLUX_NAMES:
        from . import flux  # diffusers only when asked
        net = (flux.build_transformer(flux.FLUX_CONFIGS["flux-dev"]) if name == "flux-dev"
               else flux.build_autoencoder(flux.FLUX_AE_CONFIGS["flux-ae"]))
    else:
        with torch.device("meta"):
            if name in SIT_CONFIGS:
                net = SiT(SIT_CONFIGS[name])
            elif name in CLASSIFIERS:
                net = CLASSIFIERS[name]()
            else:
                raise KeyError(f"unknown model {name!r}; known: "
                               f"{sorted(SIT_CONFIGS) + sorted(CLASSIFIERS) + list(FLUX_NAMES)}")
    state = net.state_dict()
    return {"state_dict": {k: list(v.shape) for k, v in state.items()},
            "num_parameters": sum(v.numel() for v in state.values())}
