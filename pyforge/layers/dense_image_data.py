"""DenseImageData: SegNet's (and ENet's) data layer of image / label-image pairs."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..errors import DataError
from ..io.datum import COLOR, GRAY, decode_image, image_path, read_file, resize_image
from ..io.transform import DataTransformer
from ..proto import resolve_path
from .base import register_layer
from .image_data import ImageDataLayer


def read_pair_list(path: str, where: str) -> list[tuple[str, str]]:
    """The ``<image> <label image>`` lines of a DenseImageData source (blank lines skipped)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DataError(f"{where}: source list '{path}' does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{where}: cannot read source list '{path}': {exc}") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        names = line.split()
        if not names:
            continue
        if len(names) != 2:
            raise DataError(f"{path}:{number}: expected '<image path> <label image path>', "
                            f"found {line.strip()!r}")
        pairs.append((names[0], names[1]))
    if not pairs:
        raise DataError(f"{where}: source list '{path}' names no images")
    return pairs


@register_layer("DenseImageData")
class DenseImageDataLayer(ImageDataLayer):
    """Caffe type ``DenseImageData`` (alexgkendall/caffe-segnet, TimoSaemann/caffe-enet):
    pairs of image files named in a list file, decoded with OpenCV as the fork decodes them
    -> tops data (batch_size, C, H, W) and label (batch_size, 1, H, W), the label image's
    grey values unchanged (as floats).

    Reads dense_image_data_param: source (lines ``image label_image``), root_folder,
    batch_size, shuffle (at setup and at every wrap), rand_skip, new_height/new_width (both
    or neither; images resized bilinearly, labels by nearest neighbour), is_color (the label
    is read grey), mirror (flips image and label together), crop_height/crop_width (a random
    window of both, in every phase, as the fork), label_divide_factor (ENet: the label is
    resized to new_height/f x new_width/f). transform_param's scale and mean apply to the
    image only; its mirror and crop_size are refused, as in SegNet's fork, because they
    would not move the label with the image. Random draws of batch ``k`` come from
    ``(seed, k)``, so a resumed run continues exactly.
    """

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.dense_image_data_param
        if not p.source:
            raise self.error("dense_image_data_param.source is not set")
        self.batch_size = self.check_batch_size(p.batch_size, "dense_image_data_param")
        if (p.new_height > 0) != (p.new_width > 0):
            raise self.error(f"new_height ({p.new_height}) and new_width ({p.new_width}) must "
                             "be set together")
        if (p.crop_height > 0) != (p.crop_width > 0):
            raise self.error(f"crop_height ({p.crop_height}) and crop_width ({p.crop_width}) "
                             "must be set together")
        if p.label_divide_factor < 1:
            raise self.error("dense_image_data_param.label_divide_factor must be >= 1")
        if p.label_divide_factor > 1 and p.crop_height > 0:
            raise self.error("label_divide_factor with crop_height/crop_width would crop the "
                             "smaller label with the image's window (the fork fails there)")
        t = self.param.transform_param
        if t.mirror or t.crop_size:
            raise self.error("transform_param mirror and crop_size would change the image but "
                             "not its label image; use dense_image_data_param's mirror and "
                             "crop_height/crop_width, which move both")
        self.new_size = (int(p.new_height), int(p.new_width))
        self.crop = (int(p.crop_height), int(p.crop_width))
        self.label_factor = int(p.label_divide_factor)
        self.mirror = p.mirror
        self.is_color = p.is_color
        self.root_folder = p.root_folder
        self.shuffle = p.shuffle
        source = resolve_path(p.source, self.ctx.source_file, f"{self.where} source")
        self.ctx.logger.info("Opening file %s", source)
        self.lines = read_pair_list(source, self.where)
        self.seed = int(self.ctx.rng.integers(0, 2**63 - 1))
        if self.shuffle:
            self.ctx.logger.info("Shuffling data")
        self.ctx.logger.info("A total of %d examples.", len(self.lines))
        self.skip = 0
        if p.rand_skip:
            self.skip = int(self.ctx.rng.integers(0, p.rand_skip))
            self.ctx.logger.info("Skipping first %d data points.", self.skip)
            if self.skip >= len(self.lines):
                raise self.error(f"rand_skip drew {self.skip}, but the list has only "
                                 f"{len(self.lines)} pairs (Caffe: not enough points to skip)")
        self._orders: dict[int, np.ndarray] = {}
        self.transformer = DataTransformer(t, self.phase, self.seed, self.where,
                                           self.ctx.source_file)
        image, label = self._pair(self.skip, np.random.default_rng(0))
        c, h, w = image.shape
        top[0].reshape((self.batch_size, c, h, w))
        top[1].reshape((self.batch_size, 1, *label.shape[1:]))
        self.ctx.logger.info("output data size: %d,%d,%d,%d", self.batch_size, c, h, w)
        self.start_prefetching()

    def _decode(self, path: str, grey: bool, size: tuple[int, int], nearest: bool) -> np.ndarray:
        """ReadImageToCVMat: decode (BGR or grey) and resize when a size is given; (C, H, W)."""
        where = f"{self.where}: {path}"
        image = decode_image(read_file(path, where), where, GRAY if grey else COLOR)
        if size[0] > 0 and size[1] > 0:
            image = resize_image(image, size[0], size[1], nearest=nearest)
        return image

    def _pair(self, position: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The image and label image at ``position`` of the endless (re)shuffled list, with
        the fork's joint mirror and crop drawn from ``rng``."""
        epoch, index = divmod(position, len(self.lines))
        order = self._order(epoch)
        names = self.lines[index if order is None else int(order[index])]
        image = self._decode(image_path(self.root_folder, names[0]), not self.is_color,
                             self.new_size, False)
        label_size = (self.new_size[0] // self.label_factor, self.new_size[1] // self.label_factor)
        label = self._decode(image_path(self.root_folder, names[1]), True, label_size, True)
        expected = (image.shape[1] // self.label_factor, image.shape[2] // self.label_factor)
        if label.shape[1:] != expected:
            raise DataError(f"{self.where}: label image '{names[1]}' is {label.shape[1]}x"
                            f"{label.shape[2]}, its image '{names[0]}' needs {expected[0]}x"
                            f"{expected[1]} (image and label sizes must match)")
        if self.mirror and rng.integers(0, 2):
            image, label = image[:, :, ::-1], label[:, :, ::-1]
        if self.crop[0] > 0:
            h, w = image.shape[1:]
            if self.crop[0] > h or self.crop[1] > w:
                raise DataError(f"{self.where}: crop {self.crop[0]}x{self.crop[1]} is larger "
                                f"than image '{names[0]}' ({h}x{w})")
            top_row = int(rng.integers(0, h - self.crop[0] + 1))
            left = int(rng.integers(0, w - self.crop[1] + 1))
            window = (slice(None), slice(top_row, top_row + self.crop[0]),
                      slice(left, left + self.crop[1]))
            image, label = image[window], label[window]
        return image, label

    def _load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, batch_index, 2])
        images, labels = [], []
        # The positions of this batch in the endless stream (this rank's share of it when
        # training data-parallel).
        for position in self._positions(batch_index)[1:].tolist():
            image, label = self._pair(position, rng)
            if images and image.shape != images[0].shape:
                raise DataError(
                    f"{self.where}: pair {position % len(self.lines)} of the list has a "
                    f"{image.shape[1]}x{image.shape[2]} image but the first of its batch is "
                    f"{images[0].shape[1]}x{images[0].shape[2]}; set new_height/new_width, "
                    "crop_height/crop_width or use batch_size 1")
            images.append(image)
            labels.append(label)
            if (position + 1) % len(self.lines) == 0:
                self.ctx.logger.info("Restarting data prefetching from start.")
        raw = np.stack(images)
        out = np.empty(raw.shape, dtype=np.float32)
        self.transformer.transform(raw, batch_index, out)
        return out, np.stack(labels).astype(np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        data, labels = self.prefetcher.next()
        top[0].reshape(data.shape)
        top[0].data[...] = data
        top[1].reshape(labels.shape)
        top[1].data[...] = labels
