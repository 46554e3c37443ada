"""A picture of a net's layer graph, drawn with matplotlib: ``pyforge draw-net`` and pycaffe's
``caffe.draw`` (which re-exports this module's pycaffe functions).

pycaffe builds a pydot graph and needs graphviz's ``dot`` program to lay it out. pyforge lays
the graph out itself (:mod:`.draw_layout`: ranks in Caffe's default left-to-right direction,
edges routed between the boxes, long nets wrapped into rows) and draws it with matplotlib (the
``plot`` extra), so no graphviz is needed. The picture shows what pycaffe's does: a box per
layer (name, type, and for convolution and pooling the kernel, stride and pad), an octagon per
blob, Caffe's colours, and on edges out of Data, Convolution and InnerProduct layers the batch
size or output count.

An in-place layer (``top == bottom``) is drawn between two nodes of its blob, the blob before
and after it, where graphviz draws a loop. ``.dot``/``.gv`` file names get the graph as DOT
text, for users who want graphviz's own rendering.
"""

from __future__ import annotations

import io
import os

from ..errors import PyforgeError
from ..proto import caffe_pb2
from .draw_layout import FONT_SIZE, LABEL_FONT_SIZE, Graph, Node, layout

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

    measure = _text_measure()
    width, height = layout(graph, measure)
    width = max(width, measure(graph.name or "(unnamed net)")[0] * 1.4)  # room for the title
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
    for path in graph.paths:
        axes.add_patch(FancyArrowPatch(path=Path(path), arrowstyle="-|>", mutation_scale=9,
                                       linewidth=0.8, color="#333333", zorder=1))
    for label in graph.labels:
        axes.text(label.x, label.y, label.text, ha="center", va="center", zorder=3,
                  family=FONT["family"], fontsize=LABEL_FONT_SIZE,
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
