"""Image patches from pictures that ship with packages: the data of the built-in U-Net.

Sources (no downloads): scikit-image's bundled images (``skimage.data``; extra
``phiforge[images]``) and scikit-learn's two sample photos (``load_sample_images``, read with
Pillow, which matplotlib already needs). Each picture is averaged down by an integer factor (the
one that brings its short side nearest 224 pixels), scaled to [-1, 1]; grey pictures are
repeated over the three channels. Patches are random ``size`` x ``size`` crops, flipped
left-right with probability 1/2, drawn from a seeded NumPy generator, so a (split, count, seed)
triple always gives the same tensor. The split is by source picture: ``train`` and
``held-out`` share none.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from phiforge.runtime.checks import check_integer
from phiforge.runtime.errors import InputError

__all__ = ["HELD_OUT_IMAGES", "SPLITS", "TRAIN_IMAGES", "image_patches", "source_image"]

#: skimage.data names, and "sklearn:<file stem>" for scikit-learn's sample photos
TRAIN_IMAGES = (
    "astronaut",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "camera",
    "brick",
    "grass",
    "gravel",
    "sklearn:china",
)
HELD_OUT_IMAGES = ("chelsea", "sklearn:flower")
SPLITS = {"train": TRAIN_IMAGES, "held-out": HELD_OUT_IMAGES}
_TARGET_SIDE = 224


def _raw(name: str) -> np.ndarray:
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_images

        bundle = load_sample_images()
        stems = [path.rsplit("/", 1)[-1].split(".")[0] for path in bundle.filenames]
        return bundle.images[stems.index(name.split(":", 1)[1])]
    try:
        import skimage.data
    except ImportError:
        raise InputError(
            f"image {name!r} comes with scikit-image: pip install 'phiforge[images]'"
        ) from None
    return getattr(skimage.data, name)()


@functools.cache
def source_image(name: str) -> np.ndarray:
    """The picture ``name`` as float32 (height, width, 3) in [-1, 1], averaged down by the
    integer factor that brings its short side nearest 224 pixels."""
    if name not in TRAIN_IMAGES + HELD_OUT_IMAGES:
        raise InputError(
            f"parameter 'name' must be one of {', '.join(TRAIN_IMAGES + HELD_OUT_IMAGES)}, "
            f"got {name!r}"
        )
    image = np.asarray(_raw(name), dtype=np.float32)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3]
    factor = max(1, round(min(image.shape[:2]) / _TARGET_SIDE))
    height, width = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    image = image[:height, :width].reshape(height // factor, factor, width // factor, factor, 3)
    return (image.mean(axis=(1, 3)) / 127.5 - 1.0).astype(np.float32)


def image_patches(
    split: str = "train", count: int = 4096, size: int = 32, seed: int = 0
) -> torch.Tensor:
    """``count`` patches (count, 3, size, size), float32 in [-1, 1], from the pictures of
    ``split`` (``train`` or ``held-out``), each picture chosen with probability proportional to
    its area, a uniform crop position and a left-right flip with probability 1/2."""
    if split not in SPLITS:
        raise InputError(f"parameter 'split' must be one of {', '.join(SPLITS)}, got {split!r}")
    count = check_integer("count", count, 1, 1_000_000)
    size = check_integer("size", size, 1)
    seed = check_integer("seed", seed, 0, 2**63 - 1)
    images = [source_image(name) for name in SPLITS[split]]
    smallest = min(min(image.shape[:2]) for image in images)
    if size > smallest:
        raise InputError(f"parameter 'size' must be at most {smallest} pixels, got {size}")
    rng = np.random.default_rng(seed)
    areas = np.array([image.shape[0] * image.shape[1] for image in images], dtype=np.float64)
    picks = rng.choice(len(images), size=count, p=areas / areas.sum())
    out = np.empty((count, size, size, 3), dtype=np.float32)
    for index, pick in enumerate(picks):
        image = images[pick]
        top = rng.integers(0, image.shape[0] - size + 1)
        left = rng.integers(0, image.shape[1] - size + 1)
        patch = image[top : top + size, left : left + size]
        out[index] = patch[:, ::-1] if rng.random() < 0.5 else patch
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
