"""pycaffe's ``caffe.draw``: a picture of a net's layer graph.

The drawing is pyforge's (:mod:`pyforge.insight.draw`, which ``pyforge draw-net`` uses too):
laid out by pyforge and drawn with matplotlib, so no graphviz program is needed. The picture
shows what pycaffe's does: a box per layer (name, type, and for convolution and pooling the
kernel, stride and pad), an octagon per blob, Caffe's colours and edge labels. ``.dot`` file
names get graphviz's DOT text, and :func:`get_pydot_graph` a pydot graph when pydot is
installed.
"""

from pyforge.insight.draw import (
    BLOB_STYLE,
    LAYER_STYLE_DEFAULT,
    NEURON_LAYER_STYLE,
    choose_color_by_layertype,
    draw_net,
    draw_net_to_file,
    get_edge_label,
    get_layer_label,
    get_layer_lr_mult,
    get_pooling_types_dict,
    get_pydot_graph,
)

__all__ = ["BLOB_STYLE", "LAYER_STYLE_DEFAULT", "NEURON_LAYER_STYLE",
           "choose_color_by_layertype", "draw_net", "draw_net_to_file", "get_edge_label",
           "get_layer_label", "get_layer_lr_mult", "get_pooling_types_dict", "get_pydot_graph"]
