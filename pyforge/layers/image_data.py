"""ImageData: batches of image files named in a list file, with their labels."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..errors import DataError
from ..io.datum import image_path, read_image, read_image_list
from ..io.prefetch import Prefetcher
from ..io.transform import DataTransformer
from ..proto import resolve_path
from .base import Layer, register_layer


@register_layer("ImageData", "IMAGE_DATA")
class ImageDataLayer(Layer):
    """Caffe type ``ImageData``: images named in a list file, decoded (BGR, as OpenCV), resized
    and transformed; tops data (batch_size, C, H, W) and label (batch_size).

    Reads image_data_param (source, root_folder, batch_size (default 1), new_height/new_width
    (both or neither), is_color, shuffle, rand_skip) and transform_param. With ``shuffle`` the
    list is shuffled at setup and at every wrap-around: epoch ``e`` uses a permutation drawn
    from (seed, e). rand_skip skips a random number of images in [0, rand_skip) at setup.
    Each batch takes its shape from its first image, as in Caffe.

    The state is the cursor (next batch index), the skip and the seed: batch ``k`` is a pure
    function of them, so the prefetch thread can run ahead and a resumed run continues exactly.
    """

    exact_num_bottom_blobs = 0
    exact_num_top_blobs = 2

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.image_data_param
        if not p.source:
            raise self.error("image_data_param.source is not set")
        if p.batch_size <= 0:
            raise self.error("image_data_param.batch_size must be positive")
        if (p.new_height > 0) != (p.new_width > 0):
            raise self.error(f"new_height ({p.new_height}) and new_width ({p.new_width}) must "
                             "be set together")
        self.batch_size = int(p.batch_size)
        self.new_size = (int(p.new_height), int(p.new_width))
        self.is_color = p.is_color
        self.root_folder = p.root_folder
        self.shuffle = p.shuffle
        source = resolve_path(p.source, self.ctx.source_file, f"{self.where} source")
        self.ctx.logger.info("Opening file %s", source)
        self.lines = read_image_list(source, self.where)
        self.ctx.logger.info("A total of %d images.", len(self.lines))
        self.seed = int(self.ctx.rng.integers(0, 2**63 - 1))
        if self.shuffle:
            self.ctx.logger.info("Shuffling data")
        self.skip = 0
        if p.rand_skip:
            self.skip = int(self.ctx.rng.integers(0, p.rand_skip))
            self.ctx.logger.info("Skipping first %d data points.", self.skip)
            if self.skip >= len(self.lines):
                raise self.error(f"rand_skip drew {self.skip}, but the list has only "
                                 f"{len(self.lines)} images (Caffe: not enough points to skip)")
        self._orders: dict[int, np.ndarray] = {}
        first, _ = self._image(self.skip)
        self.transformer = DataTransformer(self.param.transform_param, self.phase, self.seed,
                                           self.where, self.ctx.source_file)
        c, h, w = self.transformer.output_shape(*first.shape)
        top[0].reshape((self.batch_size, c, h, w))
        self.ctx.logger.info("output data size: %d,%d,%d,%d", self.batch_size, c, h, w)
        top[1].reshape((self.batch_size,))
        self.prefetcher = Prefetcher(self._load_batch)

    def _order(self, epoch: int) -> np.ndarray | None:
        """The image order of ``epoch`` (None: the list's own order)."""
        if not self.shuffle:
            return None
        order = self._orders.get(epoch)
        if order is None:
            # Three seed words: a stream apart from the transformer's (seed, batch) draws.
            rng = np.random.default_rng([self.seed, epoch, 1])
            order = rng.permutation(len(self.lines))
            # Batches are prepared in order, so only the latest epochs are ever needed again.
            self._orders = {e: o for e, o in self._orders.items() if e >= epoch - 1}
            self._orders[epoch] = order
        return order

    def _image(self, position: int) -> tuple[np.ndarray, int]:
        """The image and label at ``position`` of the endless (re)shuffled stream of lines."""
        epoch, index = divmod(position, len(self.lines))
        order = self._order(epoch)
        name, label = self.lines[index if order is None else int(order[index])]
        path = image_path(self.root_folder, name)
        image = read_image(path, self.where, *self.new_size, is_color=self.is_color)
        return image, label

    def _load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.lines)
        start = self.skip + batch_index * self.batch_size
        images = []
        labels = np.empty(self.batch_size, dtype=np.float32)
        for i in range(self.batch_size):
            image, labels[i] = self._image(start + i)
            if images and image.shape != images[0].shape:
                raise DataError(
                    f"{self.where}: image {start + i} of the list is {image.shape[1]}x"
                    f"{image.shape[2]}x{image.shape[0]} (HxWxC) but the first of its batch is "
                    f"{images[0].shape[1]}x{images[0].shape[2]}x{images[0].shape[0]}; set "
                    "new_height/new_width or use batch_size 1")
            images.append(image)
            if (start + i + 1) % n == 0:
                self.ctx.logger.info("Restarting data prefetching from start.")
        out = np.empty((self.batch_size, *self.transformer.output_shape(*images[0].shape)),
                       dtype=np.float32)
        self.transformer.transform(np.stack(images), batch_index, out)
        return out, labels

    @property
    def cursor(self) -> int:
        return self.prefetcher.next_index

    @property
    def dataset_size(self) -> int:
        """Images in the list (the solver compares test_iter x batch_size with it)."""
        return len(self.lines)

    def get_state(self) -> dict:
        return {"cursor": self.cursor, "skip": self.skip, "seed": self.seed}

    def set_state(self, state: dict) -> None:
        self.prefetcher.stop()
        self.skip = int(state.get("skip", self.skip))
        self.seed = self.transformer.seed = int(state.get("seed", self.seed))
        self._orders = {}
        self.prefetcher.seek(int(state["cursor"]))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        pass

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        data, labels = self.prefetcher.next()
        top[0].reshape(data.shape)
        top[0].data[...] = data
        top[1].data[...] = labels

    def close(self) -> None:
        if hasattr(self, "prefetcher"):
            self.prefetcher.stop()

