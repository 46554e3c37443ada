"""pycaffe's ``caffe.net_spec``: write nets in Python, get a NetParameter (``str()`` of it is
prototxt).

::

    n = caffe.NetSpec()
    n.data, n.label = L.Data(source="mnist_train_lmdb", backend=P.Data.LMDB, batch_size=64,
                             ntop=2, transform_param=dict(scale=1. / 255))
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20,
                            weight_filler=dict(type="xavier"))
    ...
    open("net.prototxt", "w").write(str(n.to_proto()))

``L.<Type>(*bottoms, **params)`` makes a layer of that Caffe type. Keyword arguments go into
the layer's own ``<type>_param`` message when it has that field, else into the
LayerParameter itself (``param``, ``include``, ``loss_weight``, ``name``, ...); arguments ending
in ``param`` always go to the LayerParameter. Dicts become messages and lists repeated fields;
a single value for a repeated field becomes a one-element list. ``ntop=k`` gives k tops
(0: none, the layer object is returned), ``in_place=True`` makes the tops the bottoms.

Names: a layer takes the name its first top was given in the NetSpec, and each top the name
it was assigned to; unnamed ones get ``<Type><count>`` (``Convolution1``), as in pycaffe.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from pyforge.proto import caffe_pb2

__all__ = ["NetSpec", "Top", "Function", "layers", "params", "to_proto", "assign_proto",
           "param_name_dict"]


def param_name_dict() -> dict[str, str]:
    """Layer type -> the ``<name>_param`` field that holds its parameters (without
    ``_param``), found from LayerParameter's fields (``Convolution`` -> ``convolution``)."""
    layer = caffe_pb2.LayerParameter()
    out = {}
    for field in layer.DESCRIPTOR.fields:
        if field.name.endswith("_param") and field.message_type is not None:
            type_name = field.message_type.name
            if type_name.endswith("Parameter"):
                out[type_name[: -len("Parameter")]] = field.name[: -len("_param")]
    return out


#: Layer types whose parameters live in another type's message (pycaffe's table lacks them,
#: so there ``L.Deconvolution(x, num_output=...)`` fails; here it fills convolution_param).
_SHARED_PARAMS = {"Deconvolution": "convolution", "Im2col": "convolution",
                  "ConvolutionDepthwise": "convolution", "SoftmaxWithLoss": "softmax"}
_PARAM_NAMES = {**param_name_dict(), **_SHARED_PARAMS}


def assign_proto(proto, name: str, value) -> None:
    """Set field ``name`` of ``proto`` from a Python value: dicts fill a message, lists a
    repeated field (a list of dicts adds messages), other values are assigned; a single value
    for a repeated field is taken as a one-element list."""
    field = getattr(proto, name)
    is_repeated = hasattr(field, "extend")
    if is_repeated and not isinstance(value, (list, tuple)):
        value = [value]
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], dict):
            for item in value:
                message = field.add()
                for key, v in item.items():
                    assign_proto(message, key, v)
        else:
            field.extend(value)
    elif isinstance(value, dict):
        for key, v in value.items():
            assign_proto(field, key, v)
    else:
        setattr(proto, name, value)


def to_proto(*tops) -> caffe_pb2.NetParameter:
    """A NetParameter with every layer needed to compute ``tops`` (names generated)."""
    layers: OrderedDict = OrderedDict()
    autonames: Counter = Counter()
    for top in tops:
        top.fn._to_proto(layers, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class Top:
    """One output blob of a layer (its ``n``-th top)."""

    def __init__(self, fn: Function, n: int) -> None:
        self.fn = fn
        self.n = n

    def to_proto(self) -> caffe_pb2.NetParameter:
        """A NetParameter with every layer needed to compute this top."""
        return to_proto(self)

    def _to_proto(self, layers, names, autonames) -> None:
        self.fn._to_proto(layers, names, autonames)


class Function:
    """One layer: its type, its bottoms (Tops of other layers) and its parameters."""

    def __init__(self, type_name: str, inputs: tuple, params: dict) -> None:
        self.type_name = type_name
        for index, value in enumerate(inputs):
            if not isinstance(value, Top):
                # pycaffe's wording, which scripts and Caffe's own tests match.
                raise TypeError(f"{type_name} input {index} is not a Top (type is "
                                f"{type(value)})")
        self.inputs = inputs
        self.params = dict(params)
        self.ntop = self.params.pop("ntop", 1)
        self.in_place = self.params.pop("in_place", False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names, autonames) -> str:
        if self not in names and self.ntop > 0:
            names[self] = self._get_top_name(self.tops[0], names, autonames)
        elif self not in names:
            autonames[self.type_name] += 1
            names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top: Top, names, autonames) -> str:
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _to_proto(self, layers, names, autonames) -> None:
        if self in layers:
            return
        bottom_names = []
        for value in self.inputs:
            value._to_proto(layers, names, autonames)
            bottom_names.append(layers[value.fn].top[value.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)
        own = _PARAM_NAMES.get(self.type_name)
        for key, value in self.params.items():
            try:
                if key.endswith("param") or own is None:
                    assign_proto(layer, key, value)
                    continue
                try:
                    assign_proto(getattr(layer, own + "_param"), key, value)
                except AttributeError:
                    # Not a field of the type's own message: a LayerParameter field.
                    assign_proto(layer, key, value)
            except AttributeError as exc:
                where = f"{own}_param nor of " if own else ""
                raise AttributeError(f"{self.type_name} layer '{layer.name}': {key}={value!r} "
                                     f"is not a field of {where}LayerParameter ({exc})") from None
        layers[self] = layer


class NoSuchTopError(AttributeError, KeyError):
    """A name not assigned in a NetSpec: pycaffe raises KeyError; an AttributeError too, so
    that ``hasattr(n, name)`` and ``getattr(n, name, default)`` work."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class NetSpec:
    """A set of named Tops (assigned as attributes or items); :meth:`to_proto` makes a
    NetParameter with every layer they need, named after them."""

    def __init__(self) -> None:
        super().__setattr__("tops", OrderedDict())

    def __setattr__(self, name: str, value) -> None:
        self.tops[name] = value

    def __getattr__(self, name: str):
        try:
            return self.tops[name]
        except KeyError:
            raise NoSuchTopError(f"NetSpec has no top named {name!r}") from None

    def __setitem__(self, key: str, value) -> None:
        self.tops[key] = value

    def __getitem__(self, key: str):
        return self.__getattr__(key)

    def __delitem__(self, key: str) -> None:
        del self.tops[key]

    def keys(self) -> list[str]:
        return list(self.tops)

    def vals(self) -> list:
        return list(self.tops.values())

    def to_proto(self) -> caffe_pb2.NetParameter:
        names = {value: key for key, value in self.tops.items()}
        autonames: Counter = Counter()
        layers: OrderedDict = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


class Layers:
    """``layers.<Type>(*bottoms, **params)`` makes a layer of that Caffe type and returns its
    top (or tuple of tops for ``ntop > 1``, or the layer itself for ``ntop=0``)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def layer_fn(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops

        layer_fn.__name__ = name
        return layer_fn


class Parameters:
    """``params.<Type>.<CONSTANT>``: the enum values of ``<Type>Parameter``, e.g.
    ``params.Pooling.MAX`` or ``params.Data.LMDB``."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        message = getattr(caffe_pb2, name + "Parameter", None)
        if message is None:
            raise AttributeError(f"caffe_pb2 has no message {name}Parameter")
        return _EnumValues(message)


class _EnumValues:
    def __init__(self, message) -> None:
        self._message = message

    def __getattr__(self, constant: str):
        if constant.startswith("__"):
            raise AttributeError(constant)
        return getattr(self._message, constant)


layers = Layers()
params = Parameters()
