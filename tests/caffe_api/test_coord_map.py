"""caffe.coord_map: coordinate maps between NetSpec tops and crop(), checked by the maps'
arithmetic and by building the nets they describe and comparing pixels."""

from __future__ import annotations

import numpy as np
import pytest

import caffe
from caffe import layers as L  # noqa: N812
from caffe import params as P  # noqa: N812
from caffe.coord_map import (
    AxisMismatchException,
    UndefinedMapException,
    compose,
    coord_map,
    coord_map_from_to,
    crop,
    inverse,
)


def conv_pool_deconv(ks=3, stride=1, pad=0, pool=2, dstride=2, dpad=0, dims=(40, 40)):
    """data -> conv -> max pool -> deconv (kernel twice its stride), plus a second input."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, *dims]))
    n.aux = L.Input(shape=dict(dim=[1, 1, 12, 12]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=ks, stride=stride, pad=pad)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=pool, stride=pool)
    deconv_kernel = [2 * s for s in dstride] if isinstance(dstride, list) else 2 * dstride
    n.deconv = L.Deconvolution(n.pool, num_output=2, kernel_size=deconv_kernel, stride=dstride,
                               pad=dpad)
    return n


def test_single_layer_maps():
    n = conv_pool_deconv(ks=5, stride=2, pad=1)
    axis, a, b = coord_map(n.conv.fn)
    # Output pixel y is centred on input pixel 2y - 1 + 2: x = 2y + 1, so y = x / 2 - 1 / 2.
    assert axis == 1 and a == pytest.approx(0.5) and b == pytest.approx(-0.5)
    axis, a, b = coord_map(n.deconv.fn)
    assert (axis, float(a[0]), float(b[0])) == (1, 2.0, 1.5)
    assert coord_map(L.ReLU(n.conv).fn) == (None, 1, 0)
    with pytest.raises(UndefinedMapException):
        coord_map(L.InnerProduct(n.conv, num_output=3).fn)
    dilated = L.Convolution(n.data, kernel_size=3, dilation=2, num_output=1)
    assert float(coord_map(dilated.fn).b[0]) == -2.0  # effective kernel 5
    nested = L.Pooling(n.conv, pooling_param=dict(kernel_size=3, stride=3, pad=1))
    assert coord_map(nested.fn)[1:] == (pytest.approx(1 / 3), pytest.approx(0.0))


def test_compose_and_inverse():
    assert compose((None, 1, 0), (1, 0.5, -1)) == (1, 0.5, -1)
    # Apply (a2, b2) first, then (a1, b1): a1 * (a2 x + b2) + b1.
    assert compose((1, 2, 3), (1, 0.5, -1)) == (1, 1.0, 1)
    assert inverse((1, 2.0, 3.0)) == (1, 0.5, -1.5)
    with pytest.raises(AxisMismatchException):
        compose((1, 1, 0), (2, 1, 0))


def test_conv_pool_deconv_maps_back_onto_the_data():
    n = conv_pool_deconv()
    axis, a, b = coord_map_from_to(n.deconv, n.data)
    assert (axis, float(a[0]), float(b[0])) == (1, 1.0, 0.0)
    n = conv_pool_deconv(pool=4, dstride=4)
    axis, a, b = coord_map_from_to(n.deconv, n.data)
    assert (axis, float(a[0]), float(b[0])) == (1, 1.0, -1.0)
    assert coord_map_from_to(n.data, n.data) == (None, 1, 0)


def test_padding_shifts_and_element_wise_layers_pass():
    plain = conv_pool_deconv()
    _, a0, b0 = coord_map_from_to(plain.deconv, plain.data)
    for pad in (1, 4):
        n = conv_pool_deconv(pad=pad)
        _, a, b = coord_map_from_to(n.deconv, n.data)
        assert (a == a0).all() and b == pytest.approx(b0 - pad)
        n = conv_pool_deconv(dpad=pad)
        _, a, b = coord_map_from_to(n.deconv, n.data)
        assert b == pytest.approx(b0 + pad)
        n = conv_pool_deconv(pad=pad, dpad=pad)
        assert coord_map_from_to(n.deconv, n.data)[2] == pytest.approx(b0)
    n = conv_pool_deconv()
    n.relu = L.ReLU(n.deconv)
    n.one = L.Convolution(n.relu, num_output=2, kernel_size=1)
    for top in (n.relu, n.one):
        _, a, b = coord_map_from_to(top, n.data)
        assert (a == a0).all() and (b == b0).all()


def test_every_bottom_of_a_layer_maps_alike():
    n = conv_pool_deconv()
    n.conv_data, n.conv_aux = L.Convolution(n.data, n.aux, ntop=2, num_output=2, kernel_size=5,
                                            stride=2)
    first = coord_map_from_to(n.conv_data, n.data)
    second = coord_map_from_to(n.conv_aux, n.aux)
    assert first[0] == second[0] and (first[1] == second[1]).all()
    assert (first[2] == second[2]).all()


def test_per_axis_and_nd_maps():
    square3 = conv_pool_deconv(ks=3, stride=1, pad=0)
    square5 = conv_pool_deconv(ks=5, stride=2, pad=4)
    mixed = conv_pool_deconv(ks=[3, 5], stride=[1, 2], pad=[0, 4])
    _, a3, b3 = coord_map_from_to(square3.deconv, square3.data)
    _, a5, b5 = coord_map_from_to(square5.deconv, square5.data)
    _, a, b = coord_map_from_to(mixed.deconv, mixed.data)
    assert list(a) == [a3[0], a5[0]] and list(b) == [b3[0], b5[0]]
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 16, 16, 16]))
    n.conv = L.Convolution(n.data, num_output=2, kernel_size=[3, 3, 3], pad=[0, 1, 2])
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.deconv = L.Deconvolution(n.pool, num_output=2, kernel_size=4, stride=2)
    axis, a, b = coord_map_from_to(n.deconv, n.data)
    assert axis == 1 and list(a) == [1, 1, 1] and list(b) == [0, -1, -2]


def test_a_crop_layer_shifts_by_its_offset():
    n = conv_pool_deconv(dpad=0)
    _, _, b = coord_map_from_to(n.deconv, n.data)
    n.cropped = L.Crop(n.deconv, n.data, axis=2, offset=3)
    axis, a, b_cropped = coord_map_from_to(n.cropped, n.data)
    assert axis == 1 and (a == 1).all() and b_cropped == pytest.approx(b + 3)


def test_unmappable_tops_and_impossible_crops_raise_pycaffes_errors():
    n = conv_pool_deconv()
    n.fc = L.InnerProduct(n.deconv, num_output=3)
    with pytest.raises(RuntimeError, match="connected by spatial layers"):
        coord_map_from_to(n.fc, n.data)
    n = conv_pool_deconv(pool=3, dstride=2)  # down by 3, up by 2
    with pytest.raises(AssertionError, match="scale mismatch"):
        crop(n.deconv, n.data)
    n = conv_pool_deconv(dpad=10)  # the deconvolution output is smaller than the data
    with pytest.raises(AssertionError, match="negative offset"):
        crop(n.deconv, n.data)
    n = conv_pool_deconv(ks=2)  # an even kernel centres between pixels
    with pytest.raises(AssertionError, match="noninteger offset"):
        crop(n.deconv, n.data)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 8, 8]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_h=3, kernel_w=3)
    with pytest.raises(AssertionError, match="legacy _h/_w"):
        coord_map_from_to(n.conv, n.data)


def _built(n, tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(str(n.to_proto()))
    return caffe.Net(str(path), caffe.TEST)


@pytest.mark.parametrize("pad", [1, 3, 6])
def test_crop_realigns_a_padded_convolution_with_its_input(tmp_path, pad):
    """An identity 3x3 convolution (1 at the centre) with padding shifts the image by
    ``pad - 1``; crop() must undo exactly that shift, pixel for pixel."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 9, 11]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=pad, bias_term=False)
    n.relu = L.ReLU(n.conv)
    n.crop = crop(n.relu, n.data)
    layer = n.to_proto().layer[-1]
    assert (layer.type, layer.crop_param.axis, list(layer.crop_param.offset)) == (
        "Crop", 2, [pad - 1])
    net = _built(n, tmp_path)
    kernel = np.zeros((1, 1, 3, 3), np.float32)
    kernel[0, 0, 1, 1] = 1
    net.params["conv"][0].data[...] = kernel
    image = np.random.default_rng(pad).uniform(0, 1, (1, 1, 9, 11)).astype(np.float32)
    out = net.forward(data=image)
    np.testing.assert_array_equal(out["crop"], image)


def test_crop_of_an_fcn_style_upsampling_matches_the_data_grid(tmp_path):
    """FCN's pattern: pad the first convolution, pool, upsample with a bilinear-free
    deconvolution, and crop back to the data's size; the crop lands where the map says."""
    n = conv_pool_deconv(ks=3, pad=5, pool=2, dstride=2, dims=(20, 20))
    n.score = crop(n.deconv, n.data)
    net = _built(n, tmp_path)
    assert net.blobs["score"].data.shape[2:] == net.blobs["data"].data.shape[2:]
    _, _, b = coord_map_from_to(n.deconv, n.data)
    offset = int(-b[0])
    assert offset == 5 and net.blobs["deconv"].data.shape[2] >= 20 + offset  # 4 - 1/2 + 3/2
    rng = np.random.default_rng(0)
    for name in ("conv", "deconv"):  # Caffe's default filler is all zeros
        net.params[name][0].data[...] = rng.standard_normal(net.params[name][0].data.shape)
    net.forward(data=rng.standard_normal((1, 1, 20, 20)), aux=np.zeros((1, 1, 12, 12)))
    assert np.abs(net.blobs["score"].data).max() > 0
    np.testing.assert_array_equal(net.blobs["score"].data,
                                  net.blobs["deconv"].data[:, :, offset:offset + 20,
                                                           offset:offset + 20])
