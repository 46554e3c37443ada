"""Proposal: Faster R-CNN's region proposals, natively (OpenCV dnn's ``Proposal`` layer, the
native form of py-faster-rcnn's Python layer ``rpn.proposal_layer.ProposalLayer``)."""

from __future__ import annotations

import numpy as np

from ..blob import Blob
from ..kernels.proposal import decode_proposals, greedy_nms
from .base import Layer, register_layer

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
