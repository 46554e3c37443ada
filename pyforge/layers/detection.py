"""The SSD fork's layers (weiliu89/caffe, branch ssd): PriorBox, Permute, Normalize and
DetectionOutput, with the fork's parameters, shapes and output layout."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels import detection as K
from ..proto import caffe_pb2
from .base import Layer, register_layer

_CODE_TYPES = {caffe_pb2.PriorBoxParameter.CORNER: K.CORNER,
               caffe_pb2.PriorBoxParameter.CENTER_SIZE: K.CENTER_SIZE,
               caffe_pb2.PriorBoxParameter.CORNER_SIZE: K.CORNER_SIZE}
_FLT_MAX = float(np.finfo(np.float32).max)


@register_layer("PriorBox")
class PriorBoxLayer(Layer):
    """SSD type ``PriorBox``: the default boxes of a feature map, bottoms (feature map, image)
    -> top (1, 2, H * W * num_priors * 4): normalised corners, then each corner's variance.

    Reads prior_box_param: min_size (required, repeated), max_size (one per min_size, each
    larger), aspect_ratio (1 is always first; repeats within 1e-6 are dropped), flip (adds
    1/r), clip, variance (none: 0.1; one; or four), img_size | img_h/img_w (default: the
    second bottom's size), step | step_h/step_w (default: image / feature map), offset (0.5)
    and MobileNet-SSD's reduce_boxes. The output depends on the bottoms' shapes only, so the
    gradient to them is zero.
    """

    exact_num_bottom_blobs = 2
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.prior_box_param
        if not len(p.min_size):
            raise self.error("prior_box_param needs at least one min_size")
        if min(p.min_size) <= 0:
            raise self.error(f"min_size must be positive, found {list(p.min_size)}")
        ratios = [1.0]
        for ratio in p.aspect_ratio:
            if any(abs(ratio - known) < 1e-6 for known in ratios):
                continue
            ratios.append(ratio)
            if p.flip:
                ratios.append(1.0 / ratio)
        if len(p.max_size) and len(p.max_size) != len(p.min_size):
            raise self.error(f"give one max_size per min_size: {len(p.min_size)} min_size(s), "
                             f"{len(p.max_size)} max_size(s)")
        for low, high in zip(p.min_size, p.max_size):
            if high <= low:
                raise self.error(f"max_size must be greater than min_size, found max_size "
                                 f"{high:g} for min_size {low:g}")
        # The fork reads each size into an int (SSD's ssd_pascal.py writes whole numbers).
        self.min_sizes = np.array([int(v) for v in p.min_size], np.int64)
        self.max_sizes = np.array([int(v) for v in p.max_size], np.int64)
        self.aspect_ratios = np.array(ratios, np.float32)
        self.num_priors = len(ratios) * len(p.min_size) + len(p.max_size)
        if len(p.variance) not in (0, 1, 4):
            raise self.error(f"variance takes 1 or 4 values, found {len(p.variance)}")
        if any(v <= 0 for v in p.variance):
            raise self.error(f"variance must be positive, found {list(p.variance)}")
        self.variances = np.array(list(p.variance) or [0.1], np.float32)
        self.img_h, self.img_w = self._pair(p, "img_size", "img_h", "img_w")
        self.step_h, self.step_w = self._pair(p, "step", "step_h", "step_w")

    def _pair(self, p, single: str, name_h: str, name_w: str) -> tuple[float, float]:
        """(h, w) from ``single`` or ``name_h``/``name_w`` (0 = take it from the bottoms)."""
        if p.HasField(name_h) or p.HasField(name_w):
            if p.HasField(single):
                raise self.error(f"give either {single} or {name_h}/{name_w}, not both")
            pair = (getattr(p, name_h), getattr(p, name_w))
            if min(pair) <= 0:
                raise self.error(f"{name_h} and {name_w} must be larger than 0, found {pair}")
            return pair
        if p.HasField(single):
            value = getattr(p, single)
            if value <= 0:
                raise self.error(f"{single} must be larger than 0, found {value:g}")
            return value, value
        return 0, 0

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        for index, blob in enumerate(bottom):
            if blob.num_axes != 4:
                raise self.error(f"bottom {index} must have 4 axes (N, C, H, W), found "
                                 f"{blob.shape}")
        height, width = bottom[0].shape[2:]
        top[0].reshape(1, 2, height * width * self.num_priors * 4)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        layer_h, layer_w = bottom[0].shape[2:]
        if self.img_h == 0 or self.img_w == 0:
            img_h, img_w = bottom[1].shape[2:]
        else:
            img_h, img_w = self.img_h, self.img_w
        if self.step_h == 0 or self.step_w == 0:
            step_h, step_w = np.float32(img_h) / layer_h, np.float32(img_w) / layer_w
        else:
            step_h, step_w = self.step_h, self.step_w
        p = self.param.prior_box_param
        K.prior_boxes(layer_h, layer_w, float(img_h), float(img_w), np.float32(step_h),
                      np.float32(step_w), np.float32(p.offset), self.min_sizes,
                      self.max_sizes, self.aspect_ratios, p.reduce_boxes, p.clip,
                      self.variances, top[0].data.reshape(2, -1))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        # The boxes depend on the bottoms' shapes, not their values (the fork's Backward does
        # nothing; Caffe's zero-initialised diffs make that a zero gradient).
        for down, blob in zip(propagate_down, bottom):
            if down:
                blob.diff[...] = 0


@register_layer("Permute")
class PermuteLayer(Layer):
    """SSD type ``Permute``: reorders the axes. permute_param.order lists the new axes
    (each once, each < the number of axes); the axes it leaves out follow in their order."""

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        num_axes = bottom[0].num_axes
        order = list(self.param.permute_param.order)
        for axis in order:
            if axis >= num_axes:
                raise self.error(f"order {axis} is not less than the bottom's {num_axes} axes "
                                 f"{bottom[0].shape}")
        if len(set(order)) != len(order):
            raise self.error(f"there are duplicate orders in {order}")
        self.order = tuple(order + [axis for axis in range(num_axes) if axis not in order])
        self.inverse = tuple(int(i) for i in np.argsort(self.order))

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        if top[0] is bottom[0]:
            raise self.error("cannot run in place (its top must be another blob)")
        if bottom[0].num_axes != len(self.order):
            raise self.error(f"the bottom has {bottom[0].num_axes} axes, set up for "
                             f"{len(self.order)}")
        top[0].reshape(*(bottom[0].shape[axis] for axis in self.order))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        np.copyto(top[0].data, bottom[0].data.transpose(self.order))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if propagate_down[0]:
            np.copyto(bottom[0].diff, top[0].diff.transpose(self.inverse))


@register_layer("Normalize")
class NormalizeLayer(Layer):
    """SSD type ``Normalize``: ``y = x / sqrt(sum x^2 + eps) * scale``, the sum over each
    image's C x H x W values (across_spatial, default) or over C at each location.

    Reads norm_param: across_spatial (true), channel_shared (true: one scale), eps (1e-10),
    scale_filler (default constant 1). Blobs: [scale], a scalar (0 axes) or one per channel.
    Backward is the fork's: the bottom gradient is that of the unscaled normalisation times
    each channel's scale (the true gradient when the scale is shared or equal across channels,
    as training SSD with the fork computes it otherwise); the scale gradient divides by the
    scale (a zero scale gives NaN); the bottom data is read, so it is not exact in place.
    """

    exact_num_bottom_blobs = 1
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        if bottom[0].num_axes < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found "
                             f"{bottom[0].shape}")
        p = self.param.norm_param
        channels = bottom[0].shape[1]
        if not self.blobs:
            shape = () if p.channel_shared else (channels,)
            filler = (p.scale_filler if p.HasField("scale_filler")
                      else caffe_pb2.FillerParameter(type="constant", value=1.0))
            self.blobs = [self.make_param(shape, filler, "scale_filler")]
        expected = 1 if p.channel_shared else channels
        if self.blobs[0].count != expected:
            need = "channel_shared needs 1" if p.channel_shared else "need one per channel"
            raise self.error(f"the scale blob has {self.blobs[0].count} values; {need} "
                             f"({expected})")
        self.param_propagate_down = [True]

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        shape = bottom[0].shape
        if len(shape) < 2:
            raise self.error(f"the bottom needs at least 2 axes (N, C, ...), found {shape}")
        top[0].reshape_like(bottom[0])
        self.view = (shape[0], shape[1], bottom[0].count_range(2))
        self.norm = np.zeros((shape[0], self.view[2]), np.float32)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.norm_param
        K.normalize_forward(bottom[0].data.reshape(self.view), self.blobs[0].data.reshape(-1),
                            p.across_spatial, np.float32(p.eps),
                            top[0].data.reshape(self.view), self.norm)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        scale = self.blobs[0]
        dy = top[0].diff.reshape(self.view)
        if self.param_propagate_down[0]:
            K.normalize_scale_backward(top[0].data.reshape(self.view), dy,
                                       scale.data.reshape(-1), scale.diff.reshape(-1))
        if propagate_down[0]:
            K.normalize_backward(bottom[0].data.reshape(self.view), dy,
                                 scale.data.reshape(-1), self.param.norm_param.across_spatial,
                                 self.norm, bottom[0].diff.reshape(self.view))


@register_layer("DetectionOutput")
class DetectionOutputLayer(Layer):
    """SSD type ``DetectionOutput``: bottoms (loc (N, P*L*4), conf (N, P*C), priors (1, 2,
    P*4)) -> top (1, 1, D, 7), one row ``[image, label, score, xmin, ymin, xmax, ymax]`` per
    detection, by image, then class, then score.

    Decodes each location against its prior (code_type CORNER, CENTER_SIZE or CORNER_SIZE;
    the prior's variances unless variance_encoded_in_target), then per image and class other
    than background_label_id keeps the boxes scoring above confidence_threshold and runs greedy
    NMS (nms_param: nms_threshold, top_k, eta); keep_top_k then keeps an image's best boxes
    over all classes. ``conf`` holds probabilities (the nets apply Softmax first). When no
    image has a detection the top is (1, 1, N, 7) of -1 with each row's image index, as the
    fork writes it. save_output_param and visualize are read but not acted on (pyforge writes
    no result files). There is no backward, as in the fork.
    """

    exact_num_bottom_blobs = 3
    exact_num_top_blobs = 1

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.detection_output_param
        if not p.HasField("num_classes"):
            raise self.error("detection_output_param needs num_classes")
        self.num_classes = p.num_classes
        self.num_loc_classes = 1 if p.share_location else p.num_classes
        if p.share_location and p.background_label_id == -1:
            # The fork labels shared locations -1 and skips the background label when it
            # decodes them: it then stops with "Could not find location predictions for label
            # -1" (OpenCV too).
            raise self.error("share_location: true with background_label_id: -1 leaves no "
                             "location predictions (the SSD fork decodes none and stops); use "
                             "a background class or share_location: false")
        if p.nms_param.nms_threshold < 0:
            raise self.error(f"nms_threshold must be non negative, found "
                             f"{p.nms_param.nms_threshold:g}")
        if not 0 < p.nms_param.eta <= 1:
            raise self.error(f"nms_param.eta must be in (0, 1], found {p.nms_param.eta:g}")
        self.confidence_threshold = np.float32(
            p.confidence_threshold if p.HasField("confidence_threshold") else -_FLT_MAX)
        self.top_k = p.nms_param.top_k if p.nms_param.HasField("top_k") else -1
        if p.save_output_param.output_directory or p.visualize:
            self.ctx.logger.warning("%s: save_output_param / visualize are ignored: pyforge "
                                    "writes no detection files and shows no windows", self.where)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        loc, conf, priors = bottom
        if loc.shape[:1] != conf.shape[:1]:
            raise self.error(f"loc and conf bottoms have different batch sizes: {loc.shape} vs "
                             f"{conf.shape}")
        if priors.num_axes != 3 or priors.shape[:2] != (1, 2) or priors.shape[2] % 4:
            raise self.error(f"the prior bottom must be (1, 2, num_priors * 4) as PriorBox "
                             f"writes it, found {priors.shape}")
        self.num_priors = priors.shape[2] // 4
        if self.num_priors * self.num_loc_classes * 4 != loc.count_range(1):
            raise self.error(f"{self.num_priors} priors need {self.num_priors} x "
                             f"{self.num_loc_classes} x 4 location values per image, found "
                             f"{loc.count_range(1)} (bottom {loc.shape})")
        if self.num_priors * self.num_classes != conf.count_range(1):
            raise self.error(f"{self.num_priors} priors need {self.num_priors} x "
                             f"{self.num_classes} confidences per image, found "
                             f"{conf.count_range(1)} (bottom {conf.shape})")
        top[0].reshape(1, 1, 1, 7)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.detection_output_param
        num = bottom[0].shape[0]
        n_priors, n_loc, n_classes = self.num_priors, self.num_loc_classes, self.num_classes
        loc = bottom[0].data.reshape(num, n_priors, n_loc, 4)
        conf = bottom[1].data.reshape(num, n_priors, n_classes)
        prior_data = bottom[2].data.reshape(2, n_priors, 4)
        boxes = np.zeros((num, n_loc, n_priors, 4), np.float32)
        sizes = np.zeros((num, n_loc, n_priors), np.float32)
        # Per-class locations of the background class are not decoded (the fork skips them).
        skip = -1 if p.share_location else p.background_label_id
        K.decode_boxes(loc, prior_data[0], prior_data[1], _CODE_TYPES[p.code_type],
                       p.variance_encoded_in_target, skip, boxes, sizes)
        kept = np.zeros((num, n_classes, n_priors), np.int64)
        counts = np.zeros((num, n_classes), np.int64)
        K.nms_per_class(boxes, sizes, conf, p.share_location, p.background_label_id,
                        self.confidence_threshold, np.float32(p.nms_param.nms_threshold),
                        np.float32(p.nms_param.eta), self.top_k, kept, counts)
        K.keep_top_k(kept, counts, conf, p.keep_top_k)
        total = int(counts.sum())
        if total == 0:
            self.ctx.logger.info("Couldn't find any detections")
            top[0].reshape(1, 1, num, 7)
            out = top[0].data.reshape(num, 7)
            out[...] = -1
            out[:, 0] = np.arange(num)
            return
        top[0].reshape(1, 1, total, 7)
        K.write_detections(boxes, conf, kept, counts, p.share_location,
                           top[0].data.reshape(total, 7))

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        if any(propagate_down):
            raise self.error("has no backward (the SSD fork does not implement one); set "
                             "propagate_down: false on its bottoms")

