"""The SSD fork's layers (weiliu89/caffe, branch ssd): PriorBox, Permute, Normalize and
DetectionOutput, with the fork's parameters, shapes and output layout."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels import detection as K
from ..kernels.proposal import decode_proposals, greedy_nms
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


#: py-faster-rcnn's generate_anchors() defaults, used when the prototxt gives none.
DEFAULT_RATIOS = (0.5, 1.0, 2.0)


DEFAULT_SCALES = (8.0, 16.0, 32.0)


def generate_anchors(base_size: int, ratios, scales) -> np.ndarray:
    """py-faster-rcnn's anchors (A, 4), ratios outer and scales inner, around the
    ``[0, 0, base_size - 1, base_size - 1]`` box: for each ratio the box of about the same
    area with that height/width ratio (sides rounded half to even, as NumPy rounds), then
    each scaled about its centre."""
    base = np.array([0.0, 0.0, base_size - 1.0, base_size - 1.0])
    w, h = base[2] - base[0] + 1, base[3] - base[1] + 1
    cx, cy = base[0] + 0.5 * (w - 1), base[1] + 0.5 * (h - 1)
    ratios = np.asarray(ratios, dtype=np.float64)
    widths = np.round(np.sqrt(w * h / ratios))
    heights = np.round(widths * ratios)
    ws = (widths[:, None] * np.asarray(scales, dtype=np.float64)[None, :]).ravel()
    hs = (heights[:, None] * np.asarray(scales, dtype=np.float64)[None, :]).ravel()
    anchors = np.stack([cx - 0.5 * (ws - 1), cy - 0.5 * (hs - 1),
                        cx + 0.5 * (ws - 1), cy + 0.5 * (hs - 1)], axis=1)
    return anchors.astype(np.float32)


@register_layer("Proposal")
class ProposalLayer(Layer):
    """Caffe type ``Proposal`` (OpenCV dnn's schema; py-faster-rcnn's
    ``rpn.proposal_layer``): bottoms RPN class probabilities (1, 2A, H, W) (background
    scores first, then foreground), box deltas (1, 4A, H, W) and im_info (1, 3)
    ``[image height, image width, image scale]`` -> tops rois (R, 5) ``[0, x1, y1, x2, y2]``
    and, optionally, scores (R, 1).

    Reads proposal_param: feat_stride (16), base_size (16), min_size (16), ratio (0.5, 1, 2
    when none is given), scale (8, 16, 32 when none is given), pre_nms_topn (6000),
    post_nms_topn (300), nms_thresh (0.7); the defaults are py-faster-rcnn's TEST settings,
    and are used in every phase. As py-faster-rcnn: anchors at every cell, the deltas applied,
    boxes clipped to the image, boxes with a side under ``min_size * scale`` dropped, the
    rest sorted by score, the best ``pre_nms_topn`` kept, NMS at ``nms_thresh``, the best
    ``post_nms_topn`` of those returned (R varies). OpenCV's own Proposal skips the min_size
    filter. One image per batch, as in py-faster-rcnn. Propagates no gradient (its bottoms'
    diffs are zero, as py-faster-rcnn's backward leaves them).
    """

    exact_num_bottom_blobs = 3
    min_top_blobs = 1
    max_top_blobs = 2

    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        p = self.param.proposal_param
        if p.feat_stride <= 0 or p.base_size <= 0:
            raise self.error(f"proposal_param.feat_stride and base_size must be > 0, found "
                             f"{p.feat_stride} and {p.base_size}")
        if not 0 < p.nms_thresh <= 1:
            raise self.error(f"proposal_param.nms_thresh must be in (0, 1], found "
                             f"{p.nms_thresh:g}")
        ratios = list(p.ratio) or list(DEFAULT_RATIOS)
        scales = list(p.scale) or list(DEFAULT_SCALES)
        if min(ratios) <= 0 or min(scales) <= 0:
            raise self.error(f"proposal_param ratios and scales must be > 0, found ratio "
                             f"{ratios} and scale {scales}")
        self.anchors = generate_anchors(int(p.base_size), ratios, scales)
        self.feat_stride = int(p.feat_stride)
        self.min_size = float(p.min_size)
        self.pre_nms_topn = int(p.pre_nms_topn)
        self.post_nms_topn = int(p.post_nms_topn)
        self.nms_thresh = np.float32(p.nms_thresh)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        scores, deltas, im_info = bottom
        n_anchors = len(self.anchors)
        if scores.num_axes != 4 or scores.shape[0] != 1 or scores.shape[1] != 2 * n_anchors:
            raise self.error(f"bottom 0 (the RPN class probabilities) must be (1, {2 * n_anchors}"
                             f", H, W) for {n_anchors} anchors (one image per batch, as "
                             f"py-faster-rcnn), found {scores.shape}")
        expected = (1, 4 * n_anchors, *scores.shape[2:])
        if deltas.shape != expected:
            raise self.error(f"bottom 1 (the box deltas) must be {expected}, found "
                             f"{deltas.shape}")
        if im_info.count < 3:
            raise self.error(f"bottom 2 (im_info) must hold [height, width, scale], found "
                             f"shape {im_info.shape}")
        # py-faster-rcnn sizes the tops in forward; one row until then.
        top[0].reshape((1, 5))
        if len(top) > 1:
            top[1].reshape((1, 1))

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        n_anchors = len(self.anchors)
        height, width = bottom[0].shape[2:]
        im_h, im_w, im_scale = (np.float32(v) for v in bottom[2].data.reshape(-1)[:3])
        count = height * width * n_anchors
        boxes = np.empty((count, 4), dtype=np.float32)
        scores = np.empty(count, dtype=np.float32)
        keep = np.empty(count, dtype=np.bool_)
        decode_proposals(self.anchors, bottom[1].data[0], bottom[0].data[0, n_anchors:],
                         self.feat_stride, im_h, im_w, np.float32(self.min_size * im_scale),
                         boxes, scores, keep)
        kept = np.flatnonzero(keep)
        # Falling score; equal scores keep py-faster-rcnn's argsort()[::-1] order (the later
        # box first).
        order = kept[np.argsort(scores[kept], kind="stable")[::-1]]
        if self.pre_nms_topn > 0:
            order = order[:self.pre_nms_topn]
        boxes = np.ascontiguousarray(boxes[order])
        chosen = np.empty(len(order), dtype=np.int64)
        n = greedy_nms(boxes, self.nms_thresh, self.post_nms_topn, chosen)
        chosen = chosen[:n]
        top[0].reshape((n, 5))
        top[0].data[:, 0] = 0
        top[0].data[:, 1:] = boxes[chosen]
        if len(top) > 1:
            top[1].reshape((n, 1))
            top[1].data[:, 0] = scores[order[chosen]]

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        for down, blob in zip(propagate_down, bottom):
            if down:
                blob.diff[...] = 0

    def allow_force_backward(self, bottom_index: int) -> bool:
        return False
