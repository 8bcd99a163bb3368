"""Images to pixel_values for vision presets (resize to a square, scale to [0, 1], normalise).

Accepts what task files and hub datasets hold: numpy arrays or nested lists (H x W or
H x W x C, in [0, 1], or 0-255 when any value is above 1), PIL images, and the
`{"bytes": ...}` dicts that `datasets` produces for image columns.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from suite.specs.model import ImageSpec


class PixelProcessor:
    """The vision counterpart of a tokenizer (`pad_token_id` exists so generic code can ask)."""

    pad_token_id = 0

    def __init__(self, spec: ImageSpec):
        self.spec = spec

    def __call__(self, images: list) -> np.ndarray:
        """(N, C, size, size) float32 pixel values."""
        if not images:
            return np.zeros((0, self.spec.channels, self.spec.size, self.spec.size), np.float32)
        return np.stack([self.one(img) for img in images]).astype(np.float32)

    def one(self, image) -> np.ndarray:
        array = _to_array(image).astype(np.float32)
        if array.max() > 1.0:
            array = array / 255.0
        if array.ndim == 2:
            array = array[:, :, None]
        tensor = torch.from_numpy(array).permute(2, 0, 1)  # C x H x W
        channels = self.spec.channels
        if tensor.shape[0] != channels:
            tensor = tensor.mean(0, keepdim=True).expand(channels, -1, -1)
        size = self.spec.size
        if tensor.shape[1:] != (size, size):
            tensor = F.interpolate(tensor[None], size=(size, size), mode="bilinear")[0]
        mean = torch.tensor(self.spec.mean[:channels])[:, None, None]
        std = torch.tensor(self.spec.std[:channels])[:, None, None]
        return ((tensor - mean) / std).numpy()


def _to_array(image) -> np.ndarray:
    if isinstance(image, dict) and image.get("bytes") is not None:
        image = _pil(image["bytes"])
    if hasattr(image, "convert"):  # a PIL image
        return np.asarray(image.convert("RGB"))
    return np.asarray(image)


def _pil(data: bytes):
    from PIL import Image

    return Image.open(io.BytesIO(data))
