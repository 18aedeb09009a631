"""Fashion-MNIST from Debian's `dataset-fashion-mnist`, as the default model sees it: 1x32x32 in [-1, 1]."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

DATA_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
PAD = 2  # 28 -> 32 so that 4x4 patches tile the image


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 (N, 1, 32, 32) in [-1, 1] (background -1) and int64 labels."""
    prefix = {"train": "train", "test": "t10k"}[split]
    images_path = DATA_DIR / f"{prefix}-images-idx3-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(f"{images_path} not found: install Debian's dataset-fashion-mnist or set FASHION_MNIST_DIR")
    images = _read_idx(images_path)
    labels = _read_idx(DATA_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    x = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    x = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD), value=-1.0)
    return x, torch.from_numpy(labels.astype(np.int64))


def to_uint8_image(x: torch.Tensor) -> np.ndarray:
    """A (1, 32, 32) sample -> the 28x28 uint8 picture it stands for."""
    crop = x[0, PAD:-PAD, PAD:-PAD].float().clamp(-1, 1)
    return ((crop + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
