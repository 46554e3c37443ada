"""The ``Python`` layer: a layer written in Python by the user, as in pycaffe.

``python_param { module: "my_layers" layer: "MyLayer" param_str: "..." }`` imports
``my_layers`` (from ``sys.path``, or else from the folder of the net prototxt), instantiates
``MyLayer`` with the LayerParameter, sets its ``param_str`` and ``phase``, and calls
``setup(bottom, top)`` once, then ``reshape``/``forward`` on every pass and
``backward(top, propagate_down, bottom)`` when the net needs it, exactly as pycaffe does. The
bottoms and tops are pyforge Blobs (``.data``/``.diff`` NumPy arrays, ``.shape``, ``.count``,
``.reshape(*shape)``, ``.num``/``.channels``/``.height``/``.width``): write results in place
(``top[0].data[...] = y``, ``bottom[0].diff[...] = g``).

User classes subclass :class:`PythonLayerBase` (pycaffe's ``caffe.Layer``), whose ``blobs``
holds learnable parameters: ``self.blobs.add_blob(*shape)`` in ``setup`` adds one, and the net
then trains it like any layer parameter (``param { lr_mult ... }`` apply; backward must *add*
into ``self.blobs[i].diff``). A Python layer is not a loss layer unless the prototxt gives it a
``loss_weight``.

An exception raised by the user's code (importing the module, the constructor, ``setup``,
``reshape``, ``forward``, ``backward``) reaches the caller as itself, as in pycaffe: ``except
ValueError`` around ``net.forward()`` catches the user's ValueError. A PEP 678 note names the
layer, and the CLI prints that as its one line (:func:`pyforge.errors.note_user_code_error`).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

from ..blob import Blob
from ..errors import NetError, PyforgeError, note_user_code_error
from .base import Layer, register_layer

_FASTER_RCNN_LIB = ("py-faster-rcnn's lib folder (rbgirshick/py-faster-rcnn) must be on "
                    "PYTHONPATH")
_FCN_LAYERS = "FCN's data layers (shelhamer/fcn.berkeleyvision.org) must be on PYTHONPATH"
#: Python layer modules of published nets: what to do when one cannot be imported.
_KNOWN_MODULES = {
    "rpn.proposal_layer": 'use the native layer instead: type: "Proposal" with proposal_param '
                          "{ feat_stride ratio scale } (OpenCV's, for py-faster-rcnn nets), "
                          f"or {_FASTER_RCNN_LIB}",
    "rpn.anchor_target_layer": f"a py-faster-rcnn training layer: {_FASTER_RCNN_LIB}",
    "rpn.proposal_target_layer": f"a py-faster-rcnn training layer: {_FASTER_RCNN_LIB}",
    "roi_data_layer.layer": f"py-faster-rcnn's training data layer: {_FASTER_RCNN_LIB}",
    "voc_layers": _FCN_LAYERS,
    "siftflow_layers": _FCN_LAYERS,
    "nyud_layers": _FCN_LAYERS,
    "pascalcontext_layers": _FCN_LAYERS,
}


class PythonModuleNotFound(NetError, ModuleNotFoundError):
    """The module of a Python layer is neither on sys.path nor in the net's folder (pycaffe
    raises the ImportError; this is one, with where pyforge looked)."""


def _module_hint(name: str) -> str:
    """'; what to do' for a Python layer module of a published net, else ''."""
    return f"; {_KNOWN_MODULES[name]}" if name in _KNOWN_MODULES else ""


class BlobVec(list):
    """A layer's learnable blobs: a list of Blob with pycaffe's ``add_blob(*shape)``."""

    def add_blob(self, *shape) -> Blob:
        if len(shape) == 1 and not isinstance(shape[0], int):
            shape = tuple(shape[0])
        blob = Blob(tuple(int(d) for d in shape))
        self.append(blob)
        return blob


class PythonLayerBase:
    """Base class of user Python layers (pycaffe's ``caffe.Layer``).

    Override ``setup(bottom, top)`` (once; read ``self.param_str``, check the bottoms, add
    parameters), ``reshape(bottom, top)`` (every pass: shape the tops), ``forward(bottom, top)``
    and ``backward(top, propagate_down, bottom)``. ``self.phase`` is 0 for TRAIN, 1 for TEST.
    """

    type = "Python"

    def __init__(self, param=None) -> None:
        #: The LayerParameter of the layer (pycaffe passes it to the constructor).
        self.layer_param = param
        self.blobs: BlobVec = BlobVec()
        self.param_str: str = ""
        self.phase: int = 0

    def setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        """One-time set-up; nothing by default."""

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reshape(bottom, top)")

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define forward(bottom, top)")

    def backward(self, top: list[Blob], propagate_down: list[bool],
                 bottom: list[Blob]) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must define backward(top, propagate_down, bottom)")


@register_layer("Python")
class PythonLayer(Layer):
    """Caffe type ``Python``: runs the user class named by ``python_param { module layer }``.

    Any number of bottoms and tops; the user's ``self.blobs`` are this layer's parameters.
    """

    def __getattr__(self, name: str):
        # In pycaffe, net.layers[i] of a Python layer is the user's own object; scripts read
        # its attributes (counters, buffers) from there. Unknown attributes go to it.
        impl = self.__dict__.get("impl")
        if impl is None:
            raise AttributeError(name)
        return getattr(impl, name)

    def __init__(self, param, ctx) -> None:
        super().__init__(param, ctx)
        pp = param.python_param
        self.module_name = pp.module
        self.class_name = pp.layer
        self.label = f"{pp.module}.{pp.layer}"
        self.impl = self._instantiate()
        blobs = getattr(self.impl, "blobs", None)
        if not isinstance(blobs, list):
            blobs = BlobVec()
            self.impl.blobs = blobs
        # The user's list is the layer's parameter list, so blobs added in setup are seen by
        # the net (which reads self.blobs after setup).
        self.blobs = blobs

    @property
    def where(self) -> str:
        return f"layer '{self.param.name}' (Python {self.label})"

    # --- creating the user's object ----------------------------------------------------------
    def _instantiate(self):
        if not self.module_name or not self.class_name:
            raise self.error("python_param needs both 'module' and 'layer' (the Python module "
                             "and the class in it)")
        module = self._import()
        cls = getattr(module, self.class_name, None)
        if cls is None or not isinstance(cls, type):
            found = "is not a class" if cls is not None else "not found"
            raise self.error(f"class '{self.class_name}' {found} in module '{self.module_name}' "
                             f"({getattr(module, '__file__', '?')})")
        try:
            # pycaffe constructs the layer with its LayerParameter.
            if issubclass(cls, PythonLayerBase):
                impl = cls(self.param)
            else:
                impl = cls()
        except Exception as exc:
            self._note_user_error("__init__", exc)
            raise
        missing = [m for m in ("setup", "reshape", "forward", "backward")
                   if not callable(getattr(impl, m, None))]
        if missing:
            raise self.error(f"class '{self.class_name}' lacks {', '.join(missing)}; subclass "
                             "pyforge's PythonLayerBase (pycaffe's caffe.Layer)")
        return impl

    def _import(self):
        name = self.module_name
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, name):
                self._note_user_error("import", exc, _module_hint(name))
                raise
            first = exc
        except Exception as exc:
            self._note_user_error("import", exc, _module_hint(name))
            raise
        # Not on sys.path: try the folder of the net prototxt, where users of `caffe train` keep
        # their layer modules (with PYTHONPATH pointing there).
        source = self.ctx.source_file
        if not source:
            raise PythonModuleNotFound(
                f"{self.where}: cannot import module '{name}' for class '{self.class_name}': "
                f"{first} (not on sys.path){_module_hint(name)}")
        folder = os.path.dirname(os.path.abspath(source))
        sys.path.insert(0, folder)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not _is_missing(exc, name):
                self._note_user_error("import", exc, _module_hint(name))
                raise
            raise PythonModuleNotFound(
                f"{self.where}: cannot import module '{name}' for class '{self.class_name}': "
                f"{first} (not on sys.path nor in the net's folder {folder})"
                f"{_module_hint(name)}") from None
        except Exception as exc:
            self._note_user_error("import", exc, _module_hint(name))
            raise
        finally:
            try:
                sys.path.remove(folder)
            except ValueError:
                pass
        self.ctx.logger.info("Python layer module '%s' imported from %s (the net's folder)",
                             name, folder)
        return module

    def _note_user_error(self, stage: str, exc: BaseException, hint: str = "") -> None:
        """The user's own exception, noted with the layer, module and class (and the line
        the CLI prints: the stage, the exception and where in the user's file it came from)."""
        frames = traceback.extract_tb(exc.__traceback__)
        site = ""
        if frames:
            last = frames[-1]
            site = f" at {os.path.basename(last.filename)}:{last.lineno}"
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
        note_user_code_error(exc, f"raised in {stage} of {self.where}{hint}",
                             f"{self.where}: {stage} raised {what}{site}{hint}")

    def _call(self, stage: str, *args) -> None:
        try:
            getattr(self.impl, stage)(*args)
        except PyforgeError:
            raise
        except Exception as exc:
            self._note_user_error(stage, exc)
            raise

    # --- the Layer contract ----------------------------------------------------------------
    def layer_setup(self, bottom: list[Blob], top: list[Blob]) -> None:
        self.impl.param_str = self.param.python_param.param_str
        self.impl.phase = int(self.phase)
        self._call("setup", bottom, top)
        # setup may have rebound self.blobs (pycaffe does not allow it, but be lenient).
        blobs = getattr(self.impl, "blobs", self.blobs)
        if blobs is not self.blobs:
            self.blobs = list(blobs)
        for i, blob in enumerate(self.blobs):
            if not isinstance(blob, Blob):
                raise self.error(f"blobs[{i}] is a {type(blob).__name__}, not a Blob; add "
                                 "parameters with self.blobs.add_blob(*shape)")
        self.param_propagate_down = [True] * len(self.blobs)

    def reshape(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._call("reshape", bottom, top)

    def forward(self, bottom: list[Blob], top: list[Blob]) -> None:
        self._call("forward", bottom, top)

    def backward(self, top: list[Blob], propagate_down: list[bool], bottom: list[Blob]) -> None:
        self._call("backward", top, list(propagate_down), bottom)


def _is_missing(exc: ModuleNotFoundError, name: str) -> bool:
    """Whether ``exc`` says ``name`` itself (or a parent package) is missing, rather than
    something the module imports."""
    missing = exc.name or ""
    return missing == name or name.startswith(missing + ".")
