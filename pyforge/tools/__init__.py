"""Dataset tools that reproduce Caffe's converters: ``convert_mnist_data``, ``convert_imageset``
and ``compute_image_mean``."""

from .image_mean import compute_image_mean
from .imageset import convert_imageset
from .mnist import convert_mnist, read_idx_images, read_idx_labels

__all__ = [
    "compute_image_mean",
    "convert_imageset",
    "convert_mnist",
    "read_idx_images",
    "read_idx_labels",
]
