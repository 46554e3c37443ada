"""The layout of a net's layer graph for ``pyforge draw-net`` and ``caffe.draw``.

Nodes are ranked by their longest path from the inputs (after reversing the few edges that
close a cycle, which drawing every phase at once can make), edges that span several ranks get a
virtual node in each rank they cross, and the nodes of a rank are ordered to keep edges short.
Positions are computed in two directions: *along* the flow (ranks follow each other, in
columns for LR) and *across* it (the nodes of one rank side by side).

Edges never cross a box: an edge leaves its node straight along the flow, bends only in the
gap between two columns (where no box is) and enters the next node straight; an edge through a
rank passes on the lane its virtual node keeps free there. Edge labels sit in those gaps, which
widen to hold them.

A net much longer than it is wide (GoogLeNet has 150 ranks a few nodes across) is wrapped like
text: its ranks are cut into rows (columns for TB), each row flowing in the drawing's
direction, so that the picture keeps an aspect ratio near :data:`TARGET_ASPECT`. Rows are cut
where few edges pass; those edges run around the rows in corridors: out past the end of their
row, back through the band between the rows, and in from before the start of the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

# Layout units are points (1/72 inch).
FONT_SIZE = 9
LABEL_FONT_SIZE = 8
PAD = 6.0  # inside boxes
GAP_ACROSS = 16.0  # between the boxes of a rank
GAP_VIRTUAL = 6.0  # between a box and an edge passing through its rank
GAP_ALONG = 36.0  # between ranks, at least
LABEL_PAD = 4.0  # around an edge label in its gap
PORT_STEP = 8.0  # between the ends of the edges at one side of a box
LANE = 5.0  # between parallel edges in the corridors of a wrapped drawing
CORRIDOR = 10.0  # from the boxes to the first corridor lane
ROW_GAP = 28.0  # between wrapped rows, besides their lanes
#: along / across of a wrapped drawing (LR: width / height; TB: height / width).
TARGET_ASPECT = 1.6
#: Drawings longer than this (along / across), and longer than WRAP_LENGTH, are wrapped.
WRAP_ABOVE = 3.5
WRAP_LENGTH = 1000.0

Measure = Callable[[str], "tuple[float, float]"]
Point = tuple[float, float]


@dataclass
class Node:
    key: str
    label: str
    kind: str  # "layer", "neuron" (in-place layer), "blob", or "virtual" (an edge's lane)
    color: str
    rank: int = 0
    order: float = 0.0
    width: float = 0.0
    height: float = 0.0
    x: float = 0.0
    y: float = 0.0
    across: float = 0.0  # centre across the flow, before rows are cut
    along: float = 0.0  # centre along the flow, in the final drawing (abstract)
    offset: float = 0.0  # centre across the flow, in the final drawing (abstract)
    row: int = 0
    preds: list[str] = field(default_factory=list)
    succs: list[str] = field(default_factory=list)


@dataclass
class EdgeLabel:
    text: str
    source: str  # the key of the layer whose edges it labels
    x: float
    y: float
    width: float
    height: float


@dataclass
class Graph:
    name: str
    rankdir: str
    nodes: dict[str, Node]
    edges: list[tuple[str, str, str | None]]  # (source, target, label)
    #: Per edge, the nodes it passes in rank order: its start, virtual nodes, its end.
    routes: list[list[str]] = field(default_factory=list)
    #: Per edge, whether it runs against the ranks (it closed a cycle).
    reversed: list[bool] = field(default_factory=list)
    #: Per edge, its polyline from the source's border to the target's, in drawing points.
    paths: list[list[Point]] = field(default_factory=list)
    labels: list[EdgeLabel] = field(default_factory=list)
    rows: list[tuple[int, int]] = field(default_factory=list)  # first and last rank of each


def estimate_text(label: str) -> tuple[float, float]:
    """Width and height of a label in points, from the monospace font's proportions."""
    lines = label.split("\n")
    return max(len(line) for line in lines) * 0.6 * FONT_SIZE, len(lines) * 1.3 * FONT_SIZE


# --- ranks and orders ------------------------------------------------------------------------
def _break_cycles(graph: Graph) -> None:
    """Mark the edges that close a cycle (found depth first, in node order) as reversed."""
    out: dict[str, list[int]] = {key: [] for key in graph.nodes}
    for index, (source, _target, _label) in enumerate(graph.edges):
        out[source].append(index)
    graph.reversed = [False] * len(graph.edges)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in graph.nodes:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(out[root]))]
        while stack:
            key, pending = stack[-1]
            index = next(pending, None)
            if index is None:
                state[key] = 2
                stack.pop()
                continue
            target = graph.edges[index][1]
            if state.get(target) == 1:
                graph.reversed[index] = True
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(out[target])))


def _directed(graph: Graph) -> list[tuple[str, str]]:
    return [(t, s) if flipped else (s, t)
            for (s, t, _label), flipped in zip(graph.edges, graph.reversed)]


def _rank(graph: Graph) -> None:
    """Each node's longest path from a source, in topological order."""
    edges = _directed(graph)
    indegree = {key: 0 for key in graph.nodes}
    out: dict[str, list[str]] = {key: [] for key in graph.nodes}
    for source, target in edges:
        indegree[target] += 1
        out[source].append(target)
    ready = [key for key, n in indegree.items() if n == 0]
    while ready:
        key = ready.pop()
        for target in out[key]:
            node = graph.nodes[target]
            node.rank = max(node.rank, graph.nodes[key].rank + 1)
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)


def _add_virtual_nodes(graph: Graph) -> None:
    """Give edges that span several ranks a virtual node in each rank they cross."""
    nodes = graph.nodes
    graph.routes = []
    for index, (source, target) in enumerate(_directed(graph)):
        route = [source]
        for rank in range(nodes[source].rank + 1, nodes[target].rank):
            key = f"virtual:{index}:{rank}"
            nodes[key] = Node(key, "", "virtual", "none", rank=rank)
            route.append(key)
        graph.routes.append([*route, target])
    for route in graph.routes:
        for a, b in zip(route, route[1:]):
            nodes[a].succs.append(b)
            nodes[b].preds.append(a)


def _order(graph: Graph) -> list[list[Node]]:
    """Nodes per rank, ordered by the barycentre of their neighbours (alternating sweeps)."""
    ranks: dict[int, list[Node]] = {}
    for node in graph.nodes.values():
        ranks.setdefault(node.rank, []).append(node)
    levels = [ranks[r] for r in sorted(ranks)]
    for level in levels:
        for i, node in enumerate(level):
            node.order = i
    nodes = graph.nodes
    for sweep in range(8):
        sequence = levels[1:] if sweep % 2 == 0 else levels[-2::-1]
        for level in sequence:
            for node in level:
                neighbours = node.preds if sweep % 2 == 0 else node.succs
                if neighbours:
                    node.order = sum(nodes[k].order for k in neighbours) / len(neighbours)
            level.sort(key=lambda n: n.order)
            for i, node in enumerate(level):
                node.order = i
    return levels


# --- positions across the flow --------------------------------------------------------------
def _spread(level: list[Node], extent, desired: list[float]) -> None:
    """Put the nodes of one rank as near ``desired`` as their order and sizes allow."""
    gaps = [(extent(a) + extent(b)) / 2 + (GAP_VIRTUAL if "virtual" in (a.kind, b.kind)
                                           else GAP_ACROSS) for a, b in zip(level, level[1:])]
    left = list(desired)
    for i, gap in enumerate(gaps):
        left[i + 1] = max(left[i + 1], left[i] + gap)
    right = list(desired)
    for i in range(len(gaps) - 1, -1, -1):
        right[i] = min(right[i], right[i + 1] - gaps[i])
    # Both satisfy every spacing constraint, and so does their mean.
    for node, a, b in zip(level, left, right):
        node.across = (a + b) / 2


def _assign_across(graph: Graph, levels: list[list[Node]], extent) -> None:
    nodes = graph.nodes
    for level in levels:
        _spread(level, extent, [0.0] * len(level))
    for sweep in range(8):
        for level in (levels if sweep % 2 == 0 else levels[::-1]):
            desired = []
            for node in level:
                neighbours = node.preds + node.succs
                desired.append(sum(nodes[k].across for k in neighbours) / len(neighbours)
                               if neighbours else node.across)
            _spread(level, extent, desired)


# --- the layout ------------------------------------------------------------------------------
@dataclass
class _Frame:
    """Sizes along the flow (per rank) and the rows, in abstract coordinates: ``along`` grows
    with the flow, ``across`` grows from one side of a rank to the other and row by row."""

    depth: list[float]  # each rank's size along the flow (its widest box, LR)
    gap: list[float]  # after each rank
    label_size: dict[str, tuple[float, float]]  # labelled source key -> (along, across) size
    hops_after: list[int]  # hops from rank r to r + 1
    start: list[float] = field(default_factory=list)  # each rank's column start
    row_of_rank: list[int] = field(default_factory=list)
    row_top: list[float] = field(default_factory=list)  # each row's across offset
    row_low: list[float] = field(default_factory=list)  # the row's smallest node across
    row_height: list[float] = field(default_factory=list)
    row_end: list[float] = field(default_factory=list)  # along, where the row's boxes end
    rows: list[tuple[int, int]] = field(default_factory=list)  # first and last rank of each
    margin: float = 0.0  # along, before the first column: the corridors coming in
    along: float = 0.0
    across: float = 0.0


def layout(graph: Graph, measure: Measure | None = None) -> tuple[float, float]:
    """Place every node (centre ``x``, ``y``), route every edge (``graph.paths``) and place
    the edge labels (``graph.labels``), in points with matplotlib's axes (y up); returns the
    drawing's width and height. ``measure(label) -> (width, height)`` sizes the texts."""
    measure = measure or estimate_text
    if not graph.nodes:  # a net without (drawable) layers: a title only
        graph.paths, graph.labels, graph.rows = [], [], []
        return 0.0, 0.0
    _break_cycles(graph)
    _rank(graph)
    _add_virtual_nodes(graph)
    levels = _order(graph)
    for node in graph.nodes.values():
        if node.kind != "virtual":
            text_w, text_h = measure(node.label)
            node.width = text_w + 2 * PAD + (2 * PAD if node.kind == "blob" else 0)
            node.height = text_h + 2 * PAD
    horizontal = graph.rankdir in ("LR", "RL")

    def extent(node: Node) -> float:  # size across the flow
        return node.height if horizontal else node.width

    def depth(node: Node) -> float:  # size along the flow
        return node.width if horizontal else node.height

    _assign_across(graph, levels, extent)
    frame = _frame(graph, levels, depth, measure, horizontal)
    _cut_rows(frame, levels, extent)
    for level in levels:
        for node in level:
            r = node.rank
            node.row = frame.row_of_rank[r]
            node.along = frame.start[r] + frame.depth[r] / 2
            node.offset = node.across - frame.row_low[node.row] + frame.row_top[node.row]
    paths = _route_edges(graph, frame, depth, extent)
    return _to_drawing(graph, frame, paths, horizontal)


def _frame(graph: Graph, levels: list[list[Node]], depth, measure: Measure,
           horizontal: bool) -> _Frame:
    scale = LABEL_FONT_SIZE / FONT_SIZE
    label_size = {}
    depths = [max(depth(n) for n in level) for level in levels]
    gaps = [GAP_ALONG] * len(levels)
    for (source, _target, label), flipped in zip(graph.edges, graph.reversed):
        if label and source not in label_size:
            w, h = measure(label)
            w, h = w * scale + 2 * LABEL_PAD, h * scale + 2 * LABEL_PAD
            label_size[source] = (w, h) if horizontal else (h, w)
            # The label sits in the gap its edge leaves the source through.
            r = max(graph.nodes[source].rank - (1 if flipped else 0), 0)
            gaps[r] = max(gaps[r], label_size[source][0])
    hops = [0] * len(levels)
    for node in graph.nodes.values():
        hops[node.rank] += len(node.succs)
    return _Frame(depths, gaps, label_size, hops)


def _cut_rows(frame: _Frame, levels: list[list[Node]], extent) -> None:
    """Cut the ranks into rows (one unless the drawing is much longer than wide)."""
    lows = [min(n.across - extent(n) / 2 for n in level) for level in levels]
    highs = [max(n.across + extent(n) / 2 for n in level) for level in levels]
    length = sum(frame.depth) + sum(frame.gap[:-1])
    breadth = max(highs) - min(lows)
    best = [len(levels) - 1]
    if length > max(WRAP_ABOVE * breadth, WRAP_LENGTH):
        best_score = math.inf
        for rows in range(1, len(levels) + 1):
            ends = _row_ends(frame, rows)
            along, across = _measure_rows(frame, ends, lows, highs)
            score = abs(math.log(along / across / TARGET_ASPECT))
            if score < best_score:
                best, best_score = ends, score
            if along / across < TARGET_ASPECT / 2:
                break
    _place_rows(frame, best, lows, highs)


def _row_ends(frame: _Frame, rows: int) -> list[int]:
    """The last rank of each of about ``rows`` rows of equal length, each cut where the fewest
    edges pass (and then nearest the ideal place)."""
    n = len(frame.depth)
    total = sum(frame.depth) + sum(frame.gap[:-1])
    target = total / rows
    ends = []
    first = 0
    while True:
        candidates = []
        length = 0.0
        for r in range(first, n - 1):
            length += frame.depth[r]
            if length > 1.4 * target and candidates:
                break
            if length >= 0.6 * target:
                candidates.append((frame.hops_after[r], abs(length - target), r))
            length += frame.gap[r]
        remaining = sum(frame.depth[first:]) + sum(frame.gap[first:-1])
        if not candidates or remaining <= 1.25 * target:
            ends.append(n - 1)
            return ends
        end = min(candidates)[2]
        ends.append(end)
        first = end + 1


def _measure_rows(frame: _Frame, ends: list[int], lows, highs) -> tuple[float, float]:
    along, across, first = 0.0, 0.0, 0
    for k, end in enumerate(ends):
        length = sum(frame.depth[first:end + 1]) + sum(frame.gap[first:end])
        along = max(along, length)
        across += max(highs[first:end + 1]) - min(lows[first:end + 1])
        if k < len(ends) - 1:
            across += ROW_GAP + frame.hops_after[end] * LANE
        first = end + 1
    corridors = 2 * (CORRIDOR + max((frame.hops_after[e] for e in ends[:-1]), default=0) * LANE)
    return along + (corridors if len(ends) > 1 else 0.0), across


def _place_rows(frame: _Frame, ends: list[int], lows, highs) -> None:
    wrapped = len(ends) > 1
    incoming = max((frame.hops_after[e] for e in ends[:-1]), default=0)
    frame.margin = CORRIDOR + incoming * LANE if wrapped else 0.0
    first, top = 0, 0.0
    frame.row_of_rank = [0] * len(frame.depth)
    frame.start = [0.0] * len(frame.depth)
    for k, end in enumerate(ends):
        position = frame.margin
        for r in range(first, end + 1):
            frame.row_of_rank[r] = k
            frame.start[r] = position
            position += frame.depth[r] + frame.gap[r]
        frame.row_end.append(position - frame.gap[end])
        frame.row_low.append(min(lows[first:end + 1]))
        frame.row_height.append(max(highs[first:end + 1]) - frame.row_low[-1])
        frame.row_top.append(top)
        top += frame.row_height[-1] + ROW_GAP + frame.hops_after[end] * LANE
        first = end + 1
    frame.across = top - ROW_GAP - frame.hops_after[ends[-1]] * LANE
    frame.along = max(frame.row_end)
    frame.rows = list(zip([0, *[e + 1 for e in ends[:-1]]], ends))


def _ports(keys: list[str], graph: Graph, node: Node, extent) -> dict[str, float]:
    """Across positions of the edge ends on one side of ``node``, in the order of the nodes
    at their other ends."""
    ordered = sorted(keys, key=lambda k: (graph.nodes[k].row, graph.nodes[k].offset))
    step = min(PORT_STEP, 0.7 * extent(node) / max(len(keys) - 1, 1))
    return {k: node.offset + (i - (len(keys) - 1) / 2) * step for i, k in enumerate(ordered)}


def _route_edges(graph: Graph, frame: _Frame, depth, extent) -> list[list[Point]]:
    """Each edge's polyline (abstract coordinates), and the edge labels' places."""
    nodes = graph.nodes
    exits = {k: _ports(n.succs, graph, n, extent) for k, n in nodes.items()}
    entries = {k: _ports(n.preds, graph, n, extent) for k, n in nodes.items()}
    wraps: dict[int, list[tuple[str, str]]] = {}  # boundary row -> its hops, in exit order
    for key, node in nodes.items():
        for succ in node.succs:
            if nodes[succ].row != node.row:
                wraps.setdefault(node.row, []).append((key, succ))
    for hops in wraps.values():
        hops.sort(key=lambda hop: exits[hop[0]][hop[1]])
    def wraps_out(key: str) -> bool:
        node = nodes[key]
        return bool(node.succs) and nodes[node.succs[0]].row != node.row

    label_room: dict[int, float] = {}  # labels of edges that leave a row: in its corridor
    for (source, _target, label), flipped in zip(graph.edges, graph.reversed):
        if label and not flipped and wraps_out(source):
            row = nodes[source].row
            label_room[row] = max(label_room.get(row, 0.0), frame.label_size[source][0])

    def hop_points(a: str, b: str) -> list[Point]:
        u, v = nodes[a], nodes[b]
        c_out, c_in = exits[a][b], entries[b][a]
        out_end = frame.start[u.rank] + frame.depth[u.rank]
        points = [(u.along + depth(u) / 2, c_out), (out_end, c_out)]
        if u.row == v.row:
            points += [(frame.start[v.rank], c_in)]
        else:
            hops = wraps[u.row]
            i, m = hops.index((a, b)), len(hops)
            right = frame.row_end[u.row] + CORRIDOR + label_room.get(u.row, 0.0) + (
                m - 1 - i) * LANE
            band = frame.row_top[u.row] + frame.row_height[u.row] + ROW_GAP / 2 + (
                m - 1 - i) * LANE
            left = frame.margin - CORRIDOR - i * LANE
            points += [(right, c_out), (right, band), (left, band), (left, c_in),
                       (frame.start[v.rank], c_in)]
        return [*points, (v.along - depth(v) / 2, c_in)]

    paths = []
    for route, flipped in zip(graph.routes, graph.reversed):
        points: list[Point] = []
        for a, b in zip(route, route[1:]):
            points.extend(hop_points(a, b))
        points = [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]
        paths.append(points[::-1] if flipped else points)
    def bend(a: str, b: str) -> Point:
        """The middle of the hop's bend in the gap between its columns (or of its way back
        through the band between rows, for a hop that changes rows)."""
        points = hop_points(a, b)
        if nodes[a].row == nodes[b].row:
            (a1, c1), (a2, c2) = points[-3], points[-2]
        else:
            (a1, c1), (a2, c2) = points[3], points[4]
        return (a1 + a2) / 2, (c1 + c2) / 2

    graph.labels = []
    labelled = set()
    for (source, _target, label), route, flipped in zip(graph.edges, graph.routes,
                                                        graph.reversed):
        # Every top of a layer carries the same label (Caffe's): show it once.
        if not label or source in labelled:
            continue
        labelled.add(source)
        along, across = frame.label_size[source]
        if not flipped and wraps_out(source):  # in the corridor, before its lanes
            row = nodes[source].row
            centre = (frame.row_end[row] + CORRIDOR / 2 + along / 2, exits[source][route[1]])
        else:
            centre = bend(*route[-2:]) if flipped else bend(*route[:2])
        graph.labels.append(EdgeLabel(label, source, centre[0], centre[1],
                                      along - 2 * LABEL_PAD, across - 2 * LABEL_PAD))
    return paths


def _to_drawing(graph: Graph, frame: _Frame, paths: list[list[Point]],
                horizontal: bool) -> tuple[float, float]:
    """Abstract (along, across) to matplotlib's (x, y): LR flows right and rows go down,
    TB flows down and rows go right; RL and BT mirror them."""
    corridor = max((p[0] for path in paths for p in path), default=0.0)
    along_total = max(frame.along, corridor) + (CORRIDOR if corridor > frame.along else 0.0)
    across_total = frame.across
    width, height = (along_total, across_total) if horizontal else (across_total, along_total)

    def convert(along: float, across: float) -> Point:
        if graph.rankdir == "LR":
            return along, height - across
        if graph.rankdir == "RL":
            return width - along, height - across
        if graph.rankdir == "TB":
            return across, height - along
        return across, along  # BT

    for node in graph.nodes.values():
        node.x, node.y = convert(node.along, node.offset)
    graph.paths = [[convert(*p) for p in path] for path in paths]
    for label in graph.labels:
        label.x, label.y = convert(label.x, label.y)
        if not horizontal:
            label.width, label.height = label.height, label.width
    graph.rows = frame.rows
    return width, height
