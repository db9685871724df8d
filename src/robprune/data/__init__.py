"""Data: in-memory uint8 image datasets (digits, CIFAR-10 batches, ImageFolder trees) and training batches."""

from .batches import as_float_images, augment_batch, iterate_batches
from .datasets import CIFAR10_CLASSES, SCHEMES, load_cifar10, load_dataset, load_digits
from .image_data import ImageData, default_cache_dir
from .imagefolder import load_imagefolder

__all__ = ["CIFAR10_CLASSES", "ImageData", "SCHEMES", "as_float_images", "augment_batch", "default_cache_dir",
           "iterate_batches", "load_cifar10", "load_dataset", "load_digits", "load_imagefolder"]
