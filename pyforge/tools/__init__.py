"""Dataset tools that reproduce Caffe's converters (``convert_mnist_data``, ...)."""

from .mnist import convert_mnist, read_idx_images, read_idx_labels

__all__ = ["convert_mnist", "read_idx_images", "read_idx_labels"]
