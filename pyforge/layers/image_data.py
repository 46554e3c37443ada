"""Image-file data layers: ImageData (images named in a list file, with labels) and R-CNN's
WindowData (windows cut out of images)."""

from __future__ import annotations

import math

import numpy as np

from ..blob import Blob
from ..errors import DataError
from ..io.datum import (
    COLOR,
    GRAY,
    decode_image,
    image_path,
    read_file,
    read_image,
    read_image_list,
    resize_image,
)
from ..io.transform import DataTransformer
from ..proto import resolve_path
from .base import register_layer
from .data import BasePrefetchingDataLayer, RecordDataLayer


@register_layer("ImageData", "IMAGE_DATA")
class ImageDataLayer(RecordDataLayer):
    """Caffe type ``ImageData``: images named in a list file, decoded (BGR, as OpenCV), resized
    and transformed; tops data (batch_size, C, H, W) and label (batch_size).

    Reads image_data_param (source, root_folder, batch_size (default 1), new_height/new_width
    (both or neither), is_color, shuffle, rand_skip) and transform_param. With ``shuffle`` the
    list is shuffled at setup and at every wrap-around: epoch ``e`` uses a permutation drawn
    from (seed, e). rand_skip skips a random number of images in [0, rand_skip) at setup.
    Each batch takes its shape from its first image, as in Caffe.

    The state is the cursor (next batch index), the skip and the seed (see
    :class:`RecordDataLayer`).
    """

    exact_num_top_blobs = 2
    same_size_hint = " or new_height/new_width"

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.image_data_param
        if not p.source:
            raise self.error("image_data_param.source is not set")
        self.batch_size = self.check_batch_size(p.batch_size, "image_data_param")
        if (p.new_height > 0) != (p.new_width > 0):
            raise self.error(f"new_height ({p.new_height}) and new_width ({p.new_width}) must "
                             "be set together")
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
        if p.rand_skip:
            self.skip = int(self.ctx.rng.integers(0, p.rand_skip))
            self.ctx.logger.info("Skipping first %d data points.", self.skip)
            if self.skip >= len(self.lines):
                raise self.error(f"rand_skip drew {self.skip}, but the list has only "
                                 f"{len(self.lines)} images (Caffe: not enough points to skip)")
        self._orders: dict[int, np.ndarray] = {}
        first = self._item(self.skip)[0]
        self.transformer = DataTransformer(self.param.transform_param, self.phase, self.seed,
                                           self.where, self.ctx.source_file)
        c, h, w = self.transformer.output_shape(*first.shape)
        top[0].reshape((self.batch_size, c, h, w))
        self.ctx.logger.info("output data size: %d,%d,%d,%d", self.batch_size, c, h, w)
        top[1].reshape((self.batch_size,))
        self.start_prefetching()

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

    def _item(self, position: int) -> tuple[np.ndarray, float, str]:
        """The image at ``position`` of the endless (re)shuffled stream of lines."""
        epoch, index = divmod(position, len(self.lines))
        order = self._order(epoch)
        line = index if order is None else int(order[index])
        name, label = self.lines[line]
        path = image_path(self.root_folder, name)
        image = read_image(path, self.where, *self.new_size, is_color=self.is_color)
        return image, label, f"{self.where}: {path} (line {line + 1} of the list)"

    @property
    def dataset_size(self) -> int:
        """Images in the list."""
        return len(self.lines)

    def set_state(self, state: dict) -> None:
        self._orders = {}
        super().set_state(state)


# --- WindowData -------------------------------------------------------------------------------
_IMAGE, _LABEL, _OVERLAP, _X1, _Y1, _X2, _Y2 = range(7)


def _round(value) -> int:
    """C's round(): halves away from zero (Python's round() goes to even)."""
    value = float(value)
    return int(math.copysign(math.floor(abs(value) + 0.5), value))


@register_layer("WindowData", "WINDOW_DATA")
class WindowDataLayer(BasePrefetchingDataLayer):
    """Caffe type ``WindowData`` (R-CNN fine-tuning): windows cut out of images, warped to
    crop_size x crop_size; tops data (batch_size, C, crop, crop) and label (batch_size).

    The window file (window_data_param.source) repeats: ``# <image index>``, the image path
    (prefixed with root_folder), its channels, height and width, the number of windows, then
    one ``<class> <overlap> <x1> <y1> <x2> <y2>`` line per window. Windows with overlap >=
    fg_threshold are foreground (class > 0), those with overlap < bg_threshold background
    (class 0). Each batch has ``int(batch_size * fg_fraction)`` foreground windows drawn at
    random, after ``batch_size`` minus that many background ones. context_pad and crop_mode
    ("warp" or "square") enlarge the window as Caffe does; parts outside the image stay 0.

    As in Caffe, crop_size, mirror and mean_file/mean_value come from transform_param and
    ``scale`` from window_data_param (whose own crop_size, mirror and mean_file are ignored).
    Images are read in colour. The draws of batch ``k`` are seeded by (seed, k); the state
    is the cursor and the seed.
    """

    exact_num_top_blobs = 2

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.window_data_param
        tp = self.param.transform_param
        log = self.ctx.logger
        if not p.source:
            raise self.error("window_data_param.source is not set")
        self.batch_size = self.check_batch_size(p.batch_size, "window_data_param")
        self.crop = int(tp.crop_size)
        if self.crop <= 0:
            raise self.error("transform_param.crop_size must be positive (the size windows are "
                             "warped to)")
        if 2 * p.context_pad >= self.crop:
            raise self.error(f"context_pad {p.context_pad} leaves nothing of crop_size "
                             f"{self.crop}")
        if p.crop_mode not in ("warp", "square"):
            raise self.error(f"crop_mode must be 'warp' or 'square', found {p.crop_mode!r}")
        log.info("Window data layer:\n  foreground (object) overlap threshold: %g\n"
                 "  background (non-object) overlap threshold: %g\n"
                 "  foreground sampling fraction: %g\n  cache_images: %d\n  root_folder: %s",
                 p.fg_threshold, p.bg_threshold, p.fg_fraction, p.cache_images, p.root_folder)
        self.scale = np.float32(p.scale)
        self.context_pad = int(p.context_pad)
        self.square = p.crop_mode == "square"
        self.mirror = tp.mirror
        source = resolve_path(p.source, self.ctx.source_file, f"{self.where} source")
        self._read_window_file(source)
        log.info("Number of images: %d", len(self.images))
        counts = {0: len(self.bg)}
        for label in self.fg[:, _LABEL].astype(np.int64).tolist():
            counts[label] = counts.get(label, 0) + 1
        for label in sorted(counts):
            log.info("class %d has %d samples", label, counts[label])
        log.info("Amount of context padding: %d", self.context_pad)
        log.info("Crop mode: %s", p.crop_mode)
        self.num_fg = int(np.float32(self.batch_size) * np.float32(p.fg_fraction))
        if self.num_fg > 0 and not len(self.fg):
            raise self.error(f"{source} has no foreground windows (overlap >= "
                             f"{p.fg_threshold:g}) but fg_fraction asks for {self.num_fg}")
        if self.num_fg < self.batch_size and not len(self.bg):
            raise self.error(f"{source} has no background windows (overlap < "
                             f"{p.bg_threshold:g}) but fg_fraction leaves "
                             f"{self.batch_size - self.num_fg} per batch to them")
        top[0].reshape((self.batch_size, self.channels, self.crop, self.crop))
        log.info("output data size: %d,%d,%d,%d", self.batch_size, self.channels, self.crop,
                 self.crop)
        top[1].reshape((self.batch_size,))
        # The transformer loads and checks mean_file / mean_value; windows use them directly.
        self.seed = int(self.ctx.rng.integers(0, 2**63 - 1))
        means = DataTransformer(tp, self.phase, self.seed, self.where, self.ctx.source_file)
        self.mean_image = means.mean_image
        if self.mean_image is not None:
            log.info("Loading mean file from: %s", tp.mean_file)
            mc, mh, mw = self.mean_image.shape
            self.mean_off = (mw - self.crop) // 2
            if mc != self.channels or self.mean_off < 0 or self.mean_off + self.crop > mh:
                raise self.error(f"mean_file holds a {mc}x{mh}x{mw} image; windows need "
                                 f"{self.channels} channels and at least {self.crop}x"
                                 f"{self.crop}")
        self.mean_values = None
        if means.mean_values:
            if len(means.mean_values) not in (1, self.channels):
                raise self.error(f"give 1 mean_value or one per channel ({self.channels}), "
                                 f"found {len(means.mean_values)}")
            values = means.mean_values * (self.channels if len(means.mean_values) == 1 else 1)
            self.mean_values = np.array(values, dtype=np.float32)[:, None, None]
        self.start_prefetching()

    def _read_window_file(self, source: str) -> None:
        p = self.param.window_data_param
        try:
            with open(source, encoding="utf-8") as handle:
                tokens = handle.read().split()
        except FileNotFoundError:
            raise self.error(f"window file '{source}' does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise self.error(f"cannot read window file '{source}': {exc}") from None
        if not tokens:
            raise self.error(f"window file '{source}' is empty")
        pos = 0

        def take(kind, what: str):
            nonlocal pos
            if pos >= len(tokens):
                raise self.error(f"{source}: image {len(self.images)}: ends before its {what}")
            token = tokens[pos]
            pos += 1
            try:
                return kind(token)
            except ValueError:
                raise self.error(f"{source}: image {len(self.images)}: {what} must be "
                                 f"{'an integer' if kind is int else 'a number'}, found "
                                 f"{token!r}") from None

        self.images: list[tuple[str, tuple[int, int, int]]] = []
        self.cache: list[bytes] = []
        fg: list[list[float]] = []
        bg: list[list[float]] = []
        while pos < len(tokens):
            if tokens[pos] != "#":
                raise self.error(f"{source}: expected '#' to start image {len(self.images)}, "
                                 f"found {tokens[pos]!r}")
            pos += 1
            index = take(int, "image index")
            if index != len(self.images):
                raise self.error(f"{source}: images must be numbered 0, 1, ... in order; "
                                 f"expected '# {len(self.images)}', found '# {index}'")
            path = p.root_folder + take(str, "image path")
            size = (take(int, "channels"), take(int, "height"), take(int, "width"))
            if size[0] != 3:
                raise self.error(f"{source}: image {index} ({path}) has {size[0]} channels; "
                                 "WindowData reads every image in colour (3 channels)")
            self.images.append((path, size))
            if p.cache_images:
                self.cache.append(read_file(path, f"{self.where}: {source}: image {index}"))
            count = take(int, "number of windows")
            for _ in range(count):
                label = take(int, "window class")
                overlap = take(float, "window overlap")
                box = [take(int, f"window {c}") for c in ("x1", "y1", "x2", "y2")]
                if overlap >= p.fg_threshold:
                    if label <= 0:
                        raise self.error(f"{source}: image {index}: a foreground window "
                                         f"(overlap {overlap:g}) has class {label}; foreground "
                                         "classes must be > 0")
                    fg.append([index, label, overlap, *box])
                elif overlap < p.bg_threshold:
                    bg.append([index, 0, 0, *box])  # background: class and overlap forced to 0
            if index % 100 == 0:
                self.ctx.logger.info("num: %d %s %d %d %d windows to process: %d", index,
                                     path, *size, count)
        self.channels = self.images[-1][1][0]
        self.fg = np.array(fg, dtype=np.float32).reshape(-1, 7)
        self.bg = np.array(bg, dtype=np.float32).reshape(-1, 7)

    def _image(self, index: int) -> np.ndarray:
        path = self.images[index][0]
        if self.cache:
            return decode_image(self.cache[index], f"{self.where}: {path}", COLOR)
        return read_image(path, self.where, is_color=True)

    def _load_batch(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, batch_index])
        data = np.zeros((self.batch_size, self.channels, self.crop, self.crop), dtype=np.float32)
        labels = np.empty(self.batch_size, dtype=np.float32)
        item = 0
        for windows, count in ((self.bg, self.batch_size - self.num_fg), (self.fg, self.num_fg)):
            for _ in range(count):
                window = windows[int(rng.integers(0, len(windows)))]
                flip = bool(self.mirror and rng.integers(0, 2))
                self._warp(window, flip, data[item])
                labels[item] = window[_LABEL]
                item += 1
        return data, labels

    def _warp(self, window: np.ndarray, flip: bool, out: np.ndarray) -> None:
        """Cut ``window`` out of its image, warp it into ``out`` (C, crop, crop), subtract the
        mean and scale, following Caffe's float arithmetic for the enlarged region."""
        image = self._image(int(window[_IMAGE]))
        _, rows, cols = image.shape
        x1, y1, x2, y2 = (int(v) for v in window[_X1:])
        crop = self.crop
        out_h = out_w = crop
        pad_h = pad_w = 0
        if self.context_pad > 0 or self.square:
            f32 = np.float32
            context_scale = f32(crop) / f32(crop - 2 * self.context_pad)
            half_h = f32(y2 - y1 + 1) / f32(2)
            half_w = f32(x2 - x1 + 1) / f32(2)
            center_x = f32(x1) + half_w
            center_y = f32(y1) + half_h
            if self.square:
                half_h = half_w = max(half_h, half_w)
            x1 = _round(center_x - half_w * context_scale)
            x2 = _round(center_x + half_w * context_scale)
            y1 = _round(center_y - half_h * context_scale)
            y2 = _round(center_y + half_h * context_scale)
            # The enlarged region may leave the image: clip it and remember by how much.
            unclipped_h, unclipped_w = y2 - y1 + 1, x2 - x1 + 1
            pad_x1, pad_y1 = max(0, -x1), max(0, -y1)
            pad_x2, pad_y2 = max(0, x2 - cols + 1), max(0, y2 - rows + 1)
            x1, x2, y1, y2 = x1 + pad_x1, x2 - pad_x2, y1 + pad_y1, y2 - pad_y2
            scale_x = f32(crop) / f32(unclipped_w)
            scale_y = f32(crop) / f32(unclipped_h)
            out_w = _round(f32(x2 - x1 + 1) * scale_x)
            out_h = _round(f32(y2 - y1 + 1) * scale_y)
            pad_x1 = _round(f32(pad_x1) * scale_x)
            pad_x2 = _round(f32(pad_x2) * scale_x)
            pad_y1 = _round(f32(pad_y1) * scale_y)
            pad_h = pad_y1
            pad_w = pad_x2 if flip else pad_x1  # the padding is mirrored with the window
            out_h = min(out_h, crop - pad_h)  # rounding may overshoot the crop
            out_w = min(out_w, crop - pad_w)
        path = self.images[int(window[_IMAGE])][0]
        if not (0 <= x1 <= x2 < cols and 0 <= y1 <= y2 < rows):
            raise DataError(f"{self.where}: window ({int(window[_X1])}, {int(window[_Y1])}, "
                            f"{int(window[_X2])}, {int(window[_Y2])}) lies outside {path}, "
                            f"which is {cols}x{rows}")
        if out_h <= 0 or out_w <= 0:
            raise DataError(f"{self.where}: window ({x1}, {y1}, {x2}, {y2}) of {path} warps to "
                            f"{out_w}x{out_h} pixels")
        warped = resize_image(image[:, y1 : y2 + 1, x1 : x2 + 1], out_h, out_w)
        if flip:
            warped = warped[:, :, ::-1]
        pixels = warped.astype(np.float32)
        if self.mean_image is not None:
            top, left = self.mean_off + pad_h, self.mean_off + pad_w
            pixels -= self.mean_image[:, top : top + out_h, left : left + out_w]
        elif self.mean_values is not None:
            pixels -= self.mean_values
        out[:, pad_h : pad_h + out_h, pad_w : pad_w + out_w] = pixels * self.scale


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
