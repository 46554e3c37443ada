"""pycaffe's ``caffe.draw``: a picture of a net's layer graph, drawn with matplotlib.

pycaffe builds a pydot graph and needs graphviz's ``dot`` program to lay it out. pyforge lays
the graph out itself (layers ranked by their longest path from the inputs, ordered within a
rank to keep edges short) and draws it with matplotlib (the ``plot`` extra), so no graphviz is
needed. The picture shows what pycaffe's does: a box per layer (name, type, and for
convolution and pooling the kernel, stride and pad), an octagon per blob, Caffe's colours, and
on edges out of Data, Convolution and InnerProduct layers the batch size or output count.

An in-place layer (``top == bottom``) is drawn between two nodes of its blob, the blob before
and after it, where graphviz draws a loop. ``.dot``/``.gv`` file names get the graph as DOT
text, for users who want graphviz's own rendering.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

from ..errors import PyforgeError
from ..proto import caffe_pb2

LAYER_COLOR_DEFAULT = "#6495ED"
NEURON_COLOR = "#90EE90"
BLOB_COLOR = "#E0E0E0"
RANKDIRS = ("LR", "RL", "TB", "BT")

# Caffe's draw.py styles, for the DOT output.
LAYER_STYLE_DEFAULT = {"shape": "record", "fillcolor": LAYER_COLOR_DEFAULT, "style": "filled"}
NEURON_LAYER_STYLE = {"shape": "record", "fillcolor": NEURON_COLOR, "style": "filled"}
BLOB_STYLE = {"shape": "octagon", "fillcolor": BLOB_COLOR, "style": "filled"}


def get_pooling_types_dict() -> dict[int, str]:
    """Pooling method number -> name (``{0: 'MAX', 1: 'AVE', 2: 'STOCHASTIC'}``)."""
    descriptor = caffe_pb2.PoolingParameter.PoolMethod.DESCRIPTOR
    return {v.number: v.name for v in descriptor.values}


def choose_color_by_layertype(layertype: str) -> str:
    """Caffe's colours: convolutions red, pooling orange, inner products purple."""
    if layertype in ("Convolution", "Deconvolution"):
        return "#FF5050"
    if layertype == "Pooling":
        return "#FF9900"
    if layertype == "InnerProduct":
        return "#CC33FF"
    return LAYER_COLOR_DEFAULT


def get_edge_label(layer: caffe_pb2.LayerParameter) -> str | None:
    """The label of the edges out of ``layer``: the batch size of a Data layer, the output
    count of a convolution or inner product, else none."""
    if layer.type == "Data":
        return f"Batch {layer.data_param.batch_size}"
    if layer.type in ("Convolution", "Deconvolution"):
        return str(layer.convolution_param.num_output)
    if layer.type == "InnerProduct":
        return str(layer.inner_product_param.num_output)
    return None


def get_layer_lr_mult(layer: caffe_pb2.LayerParameter) -> tuple[float, float]:
    """The lr_mult of the weights and of the bias of a Convolution, Deconvolution or
    InnerProduct layer (1 where the param spec is absent)."""
    if layer.type not in ("Convolution", "Deconvolution", "InnerProduct"):
        raise ValueError(f"{layer.type} layers do not have a learning rate multiplier")
    if len(layer.param) > 2:
        raise ValueError(f"layer '{layer.name}': {len(layer.param)} param specs, expected at "
                         "most 2 (weights, bias)")
    mults = [spec.lr_mult for spec in layer.param] + [1.0] * (2 - len(layer.param))
    return mults[0], mults[1]


def get_layer_label(layer: caffe_pb2.LayerParameter, rankdir: str,
                    display_lrm: bool = False) -> str:
    """Name, ``(type)``, and kernel/stride/pad for spatial layers (and the lr_mults of
    learning layers with ``display_lrm``, when not both 0), one per line for LR graphs,
    space-separated for TB graphs (where horizontal room is plenty). (pycaffe's returns the
    label quoted and with ``\\n`` escapes, for graphviz; this is the text itself.)"""
    separator = " " if rankdir in ("TB", "BT") else "\n"
    parts = [layer.name]
    if layer.type == "Pooling":
        pool = get_pooling_types_dict().get(layer.pooling_param.pool, "?")
        parts.append(f"({layer.type} {pool})")
    else:
        parts.append(f"({layer.type})")
    if layer.type in ("Convolution", "Deconvolution", "Pooling"):
        if layer.type == "Pooling":
            p = layer.pooling_param
            kernel, stride, pad = p.kernel_size, p.stride, p.pad
        else:
            p = layer.convolution_param
            kernel = p.kernel_size[0] if len(p.kernel_size) else 1
            stride = p.stride[0] if len(p.stride) else 1
            pad = p.pad[0] if len(p.pad) else 0
        parts.append(separator.join([f"kernel size: {kernel}", f"stride: {stride}",
                                     f"pad: {pad}"]))
    if display_lrm and layer.type in ("Convolution", "Deconvolution", "InnerProduct"):
        weights_mult, bias_mult = get_layer_lr_mult(layer)
        if weights_mult or bias_mult:
            parts.append(f"lr mult: {weights_mult:.1f}, {bias_mult:.1f}")
    return separator.join(parts)


# --- the graph --------------------------------------------------------------------------------
@dataclass
class Node:
    key: str
    label: str
    kind: str  # "layer", "neuron" (in-place layer), "blob", or "virtual" (a bend of a long edge)
    color: str
    rank: int = 0
    order: float = 0.0
    width: float = 0.0
    height: float = 0.0
    x: float = 0.0
    y: float = 0.0
    across: float = 0.0
    preds: list[str] = field(default_factory=list)
    succs: list[str] = field(default_factory=list)


@dataclass
class Graph:
    name: str
    rankdir: str
    nodes: dict[str, Node]
    edges: list[tuple[str, str, str | None]]  # (source, target, label)
    #: Per edge, the nodes it passes: source, the virtual nodes of its bends, target.
    routes: list[list[str]] = field(default_factory=list)


def _included(layer: caffe_pb2.LayerParameter, phase: int | None) -> bool:
    """Caffe's draw.py filter: only include/exclude rules that name a phase count."""
    if phase is None:
        return True
    if len(layer.include) and len(layer.exclude):
        raise PyforgeError(f"layer '{layer.name}' has both include and exclude rules")
    included = not len(layer.include)
    for rule in layer.include:
        included = included or rule.phase == phase
    for rule in layer.exclude:
        included = included and rule.phase != phase
    return included


def build_graph(net: caffe_pb2.NetParameter, rankdir: str = "LR", label_edges: bool = True,
                phase: int | None = None, display_lrm: bool = False) -> Graph:
    """The layer/blob graph of ``net`` (layers outside ``phase`` left out)."""
    if rankdir not in RANKDIRS:
        raise PyforgeError(f"rankdir must be one of {', '.join(RANKDIRS)}, found {rankdir!r}")
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str, str | None]] = []
    latest: dict[str, str] = {}  # blob name -> key of its current node
    versions: dict[str, int] = {}

    def blob_node(name: str, new_version: bool) -> str:
        if name in latest and not new_version:
            return latest[name]
        versions[name] = versions.get(name, -1) + 1
        key = f"blob:{name}:{versions[name]}"
        nodes[key] = Node(key, name, "blob", BLOB_COLOR)
        latest[name] = key
        return key

    for index, layer in enumerate(net.layer):
        if not _included(layer, phase):
            continue
        in_place = (len(layer.bottom) == 1 and len(layer.top) == 1
                    and layer.bottom[0] == layer.top[0])
        key = f"layer:{index}"
        kind = "neuron" if in_place else "layer"
        color = NEURON_COLOR if in_place else choose_color_by_layertype(layer.type)
        nodes[key] = Node(key, get_layer_label(layer, rankdir, display_lrm), kind, color)
        for bottom in layer.bottom:
            edges.append((blob_node(bottom, False), key, None))
        label = get_edge_label(layer) if label_edges else None
        for top in layer.top:
            edges.append((key, blob_node(top, top in layer.bottom), label))
    return Graph(net.name, rankdir, nodes, edges)


def _rank(graph: Graph) -> None:
    """Longest path from the sources (bounded, in case phase-less drawing makes a cycle)."""
    nodes = graph.nodes
    for _ in range(len(nodes) + 1):
        changed = False
        for source, target, _label in graph.edges:
            if nodes[target].rank < nodes[source].rank + 1:
                nodes[target].rank = nodes[source].rank + 1
                changed = True
        if not changed:
            return
        if max(node.rank for node in nodes.values()) > len(nodes):
            return


def _route(graph: Graph) -> None:
    """Split edges that span several ranks with virtual nodes, one per rank crossed, so that
    long edges get a place of their own in each rank instead of crossing boxes."""
    nodes = graph.nodes
    graph.routes = []
    for index, (source, target, _label) in enumerate(graph.edges):
        route = [source]
        for rank in range(nodes[source].rank + 1, nodes[target].rank):
            key = f"virtual:{index}:{rank}"
            nodes[key] = Node(key, "", "virtual", "none", rank=rank)
            route.append(key)
        route.append(target)
        graph.routes.append(route)
    for node in nodes.values():
        node.preds, node.succs = [], []
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


# Layout units are points (1/72 inch).
FONT_SIZE = 9
PAD = 6.0
GAP_ACROSS = 16.0
GAP_VIRTUAL = 6.0
GAP_ALONG = 36.0


def _estimate_text(label: str) -> tuple[float, float]:
    """Width and height of a label in points, from the monospace font's proportions."""
    lines = label.split("\n")
    return max(len(line) for line in lines) * 0.6 * FONT_SIZE, len(lines) * 1.3 * FONT_SIZE


def _measure(node: Node, measure) -> None:
    if node.kind == "virtual":
        node.width = node.height = 0.0
        return
    text_w, text_h = measure(node.label)
    node.width = text_w + 2 * PAD
    node.height = text_h + 2 * PAD
    if node.kind == "blob":
        node.width += 2 * PAD  # room for the octagon's corners


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


def layout(graph: Graph, measure=None) -> tuple[float, float]:
    """Give every node a centre (x, y) in points; returns the drawing's width and height.

    ``measure(label) -> (width, height)`` sizes the labels (an estimate when None)."""
    _rank(graph)
    _route(graph)
    levels = _order(graph)
    for node in graph.nodes.values():
        _measure(node, measure or _estimate_text)
    horizontal = graph.rankdir in ("LR", "RL")

    def extent(node: Node) -> float:  # size across the rank direction
        return node.height if horizontal else node.width

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
    low = min(n.across - extent(n) / 2 for n in nodes.values())
    total_across = max(n.across + extent(n) / 2 for n in nodes.values()) - low
    position = 0.0
    for level in levels:
        size = max((n.width if horizontal else n.height) for n in level)
        for node in level:
            along, across = position + size / 2, node.across - low
            node.x, node.y = (along, across) if horizontal else (across, along)
        position += size + GAP_ALONG
    total_along = max(position - GAP_ALONG, 0.0)
    width, height = (total_along, total_across) if horizontal else (total_across, total_along)
    for node in nodes.values():
        # Matplotlib's y grows upwards; LR/TB flow right/down, RL/BT are their mirror images.
        if graph.rankdir == "RL":
            node.x = width - node.x
        if graph.rankdir != "BT":
            node.y = height - node.y
    return width, height


def _border_point(node: Node, toward: tuple[float, float]) -> tuple[float, float]:
    """Where the line from ``node``'s centre to ``toward`` leaves its box."""
    dx, dy = toward[0] - node.x, toward[1] - node.y
    if node.kind == "virtual" or (dx == 0 and dy == 0):
        return node.x, node.y
    scale = min(node.width / 2 / abs(dx) if dx else float("inf"),
                node.height / 2 / abs(dy) if dy else float("inf"))
    return node.x + dx * scale, node.y + dy * scale


# --- rendering ----------------------------------------------------------------------------------
TITLE_H = 2.5 * FONT_SIZE
MARGIN = 12.0
MAX_PIXELS = 30000  # matplotlib's Agg canvas refuses images past 2**16 pixels a side
FONT = {"family": "DejaVu Sans Mono", "size": FONT_SIZE}


def _text_measure():
    """Label sizes as Agg renders them: hinting rounds each glyph's advance to whole pixels,
    which makes text up to a few percent wider than the font's outlines say."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(**FONT)
    renderer = RendererAgg(1, 1, 100)
    line_h = 1.3 * FONT_SIZE

    def measure(label: str) -> tuple[float, float]:
        lines = label.split("\n")
        pixels = max(renderer.get_text_width_height_descent(line, prop, ismath=False)[0]
                     for line in lines)
        return pixels * 72 / 100 * 1.02, len(lines) * line_h

    return measure


def render(graph: Graph, fmt: str = "png") -> bytes:
    """The laid-out graph as image bytes of ``fmt`` (png, svg, pdf, ...)."""
    from ._mpl import new_figure

    figure = new_figure("drawing a net")  # fails clearly without matplotlib
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Polygon
    from matplotlib.path import Path

    width, height = layout(graph, _text_measure())
    full_w = width + 2 * MARGIN
    full_h = height + 2 * MARGIN + TITLE_H
    dpi = min(100.0, MAX_PIXELS / (max(full_w, full_h) / 72.0))
    figure.set_size_inches(full_w / 72.0, full_h / 72.0)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(-MARGIN, width + MARGIN)
    axes.set_ylim(-MARGIN, height + MARGIN + TITLE_H)
    axes.axis("off")
    for node in graph.nodes.values():
        if node.kind == "virtual":
            continue
        left, bottom = node.x - node.width / 2, node.y - node.height / 2
        if node.kind == "blob":
            cut = min(node.height, node.width) * 0.3
            right, top = left + node.width, bottom + node.height
            corners = [(left + cut, bottom), (right - cut, bottom), (right, bottom + cut),
                       (right, top - cut), (right - cut, top), (left + cut, top),
                       (left, top - cut), (left, bottom + cut)]
            patch = Polygon(corners, closed=True, facecolor=node.color, edgecolor="black",
                            linewidth=0.8, zorder=2)
        else:
            patch = FancyBboxPatch((left, bottom), node.width, node.height,
                                   boxstyle="round,pad=0,rounding_size=3",
                                   facecolor=node.color, edgecolor="black", linewidth=0.8,
                                   zorder=2)
        axes.add_patch(patch)
        axes.text(node.x, node.y, node.label, ha="center", va="center", zorder=3,
                  linespacing=1.15, **FONT)
    labelled = set()
    for (source, _target, label), route in zip(graph.edges, graph.routes):
        points = [(graph.nodes[k].x, graph.nodes[k].y) for k in route]
        points[0] = _border_point(graph.nodes[route[0]], points[1])
        points[-1] = _border_point(graph.nodes[route[-1]], points[-2])
        axes.add_patch(FancyArrowPatch(path=Path(points), arrowstyle="-|>", mutation_scale=9,
                                       linewidth=0.8, color="#333333", zorder=1))
        # Every top of a layer carries the same label (Caffe's): show it once.
        if label and source not in labelled:
            labelled.add(source)
            (ax, ay), (bx, by) = points[0], points[1]
            axes.text((ax + bx) / 2, (ay + by) / 2, label, ha="center", va="center", zorder=3,
                      fontsize=FONT_SIZE - 1,
                      bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    axes.text(width / 2, height + MARGIN + TITLE_H / 2, graph.name or "(unnamed net)",
              ha="center", va="center", fontsize=FONT_SIZE + 3, weight="bold")
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()


def get_dot_source(caffe_net: caffe_pb2.NetParameter, rankdir: str = "LR",
                   label_edges: bool = True, phase: int | None = None,
                   display_lrm: bool = False) -> str:
    """The graph in graphviz's DOT language, with Caffe's node styles (graphviz draws the
    in-place blobs as one node with a loop, as pycaffe's pictures show them)."""
    graph = build_graph(caffe_net, rankdir, label_edges, phase, display_lrm)
    lines = [f"digraph {_dot_quote(graph.name or 'net')} {{",
             f"  graph [rankdir={rankdir}, label={_dot_quote(graph.name)}];"]

    def node_id(key: str) -> str:
        node = graph.nodes[key]
        return _dot_quote(f"{node.label}_blob" if node.kind == "blob" else key)

    emitted = set()
    for key, node in graph.nodes.items():
        ident = node_id(key)
        if ident in emitted:
            continue
        emitted.add(ident)
        style = BLOB_STYLE if node.kind == "blob" else (
            NEURON_LAYER_STYLE if node.kind == "neuron" else
            {**LAYER_STYLE_DEFAULT, "fillcolor": node.color})
        attributes = ", ".join(f"{k}={_dot_quote(v)}" for k, v in style.items())
        lines.append(f"  {ident} [label={_dot_quote(node.label)}, {attributes}];")
    for source, target, label in graph.edges:
        extra = f" [label={_dot_quote(label)}]" if label else ""
        lines.append(f"  {node_id(source)} -> {node_id(target)}{extra};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def get_pydot_graph(caffe_net: caffe_pb2.NetParameter, rankdir: str, label_edges: bool = True,
                    phase: int | None = None, display_lrm: bool = False):
    """A ``pydot.Dot`` of the graph (needs the pydot package, as pycaffe's does)."""
    try:
        import pydot
    except ImportError:
        raise PyforgeError("get_pydot_graph needs pydot (pip install pydot); draw_net and "
                           "draw_net_to_file draw without it") from None
    source = get_dot_source(caffe_net, rankdir, label_edges, phase, display_lrm)
    return pydot.graph_from_dot_data(source)[0]


def draw_net(caffe_net: caffe_pb2.NetParameter, rankdir: str, ext: str = "png",
             phase: int | None = None, display_lrm: bool = False) -> bytes:
    """The picture of ``caffe_net`` as bytes in format ``ext`` (png, svg, pdf, ...; ``dot``
    gives the DOT text)."""
    ext = ext.lower().lstrip(".")
    if ext in ("dot", "gv"):
        return get_dot_source(caffe_net, rankdir, True, phase, display_lrm).encode()
    graph = build_graph(caffe_net, rankdir, True, phase, display_lrm)
    return render(graph, ext)


def draw_net_to_file(caffe_net: caffe_pb2.NetParameter, filename, rankdir: str = "LR",
                     phase: int | None = None, display_lrm: bool = False) -> None:
    """Draw ``caffe_net`` into ``filename``; the format comes from its extension."""
    filename = os.fspath(filename)
    ext = filename[filename.rfind(".") + 1:] if "." in os.path.basename(filename) else ""
    if not ext:
        raise PyforgeError(f"{filename}: give the file an extension (.png, .svg, .pdf, .dot) "
                           "to choose the format")
    try:
        data = draw_net(caffe_net, rankdir, ext, phase, display_lrm)
    except ValueError as exc:
        # matplotlib names the formats it supports when it does not know one.
        raise PyforgeError(f"{filename}: {exc}") from None
    try:
        with open(filename, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        raise PyforgeError(f"{filename}: cannot write: {exc.strerror}") from None
