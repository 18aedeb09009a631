"""Verifiers: a scalar per sample (higher is better), raw and in input order. Ensembles live in the orchestrator.

The default bundle mirrors the paper's ImageNet verifiers on Fashion-MNIST:
- classifier-logit     supervised: the verifier CNN's logit of the conditioning class (as DINO-LinearHead);
- feature-cosine       self-supervised: cosine similarity, in the verifier CNN's feature space, between the
                       x-prediction at sigma = 0.4 and the final sample (needs no condition);
- evaluator-logprob    held-out: the evaluator ResNet's log-probability of the conditioning class; it plays
                       Inception's part and is never used for selection unless a request insists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from .classifiers import CLASSIFIERS
from .models import DiffusionModel, run_here


@dataclass
class Verifier:
    name: str
    description: str
    needs_class_label: bool = False
    needs_prompt: bool = False
    needs_x_prediction_at: float | None = None
    held_out: bool = False
    models: list[str] = field(default_factory=list)
    # Set by the worker's Compute: its run_net, through the compute loop; None: run here (models.run_here).
    runner: Callable | None = field(default=None, repr=False)

    def forward(self, fn: Callable[..., torch.Tensor], micro_batch: int, *inputs: torch.Tensor, exact: bool = False,
                name: str | None = None) -> torch.Tensor:
        """A network of this verifier over row-aligned `inputs` in micro-batches of `micro_batch` rows (through the
        compute loop when served, packed with other calls' rows)."""
        return (self.runner or run_here)(fn, micro_batch, *inputs, exact=exact, name=name)

    def score(self, model: DiffusionModel, samples: torch.Tensor, labels: torch.Tensor | None,
              x_predictions: torch.Tensor | None, prompts: list[str] | None = None) -> torch.Tensor:
        """One float64 score per sample, in input order. The engine has checked what `needs_*` declares."""
        raise NotImplementedError


def load_classifier(architecture: str, path: Path, device: torch.device) -> torch.nn.Module:
    if not path.exists():
        raise FileNotFoundError(f"verifier checkpoint {path} does not exist")
    net = CLASSIFIERS[architecture]()
    net.load_state_dict(load_file(str(path)), strict=True)
    return net.to(device).eval().requires_grad_(False)


class ClassLogit(Verifier):
    def __init__(self, name: str, description: str, net: torch.nn.Module, micro_batch: int, log_prob: bool,
                 held_out: bool, models: list[str]):
        super().__init__(name, description, needs_class_label=True, held_out=held_out, models=models)
        self.net, self.micro_batch, self.log_prob = net, micro_batch, log_prob

    @torch.inference_mode()
    def score(self, model, samples, labels, x_predictions, prompts=None):
        logits = self.forward(self.net, self.micro_batch, model.to_pixels(samples).float())
        if self.log_prob:
            logits = F.log_softmax(logits, dim=1)
        return logits.gather(1, labels.to(logits.device).view(-1, 1)).squeeze(1).cpu().double()


class FeatureCosine(Verifier):
    def __init__(self, name: str, description: str, net: torch.nn.Module, micro_batch: int, sigma: float,
                 models: list[str]):
        super().__init__(name, description, needs_x_prediction_at=sigma, models=models)
        self.net, self.micro_batch = net, micro_batch

    @torch.inference_mode()
    def score(self, model, samples, labels, x_predictions, prompts=None):
        feats = lambda x: self.forward(self.net.features, self.micro_batch, model.to_pixels(x).float())  # noqa: E731
        return F.cosine_similarity(feats(samples), feats(x_predictions), dim=1).cpu().double()


def default_bundle_verifiers(checkpoints: Path, device: torch.device, micro_batch: int,
                             model_names: list[str]) -> list[Verifier]:
    verifier_net = load_classifier("verifier-cnn", checkpoints / "verifier-cnn.safetensors", device)
    evaluator_net = load_classifier("evaluator-resnet", checkpoints / "evaluator-resnet.safetensors", device)
    return [
        ClassLogit("classifier-logit", "supervised: the verifier CNN's logit of the conditioning class",
                   verifier_net, micro_batch, log_prob=False, held_out=False, models=model_names),
        FeatureCosine("feature-cosine", "self-supervised: cosine of verifier-CNN features, x-prediction at "
                      "sigma 0.4 vs final sample", verifier_net, micro_batch, 0.4, models=model_names),
        ClassLogit("evaluator-logprob", "held-out: the evaluator ResNet's log-probability of the conditioning class",
                   evaluator_net, micro_batch, log_prob=True, held_out=True, models=model_names),
    ]
