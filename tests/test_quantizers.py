import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from adambnn_larq.quantizers import ChannelScaledSign, SpatialFlip


def _gradient(fn, x, upstream=None):
    x = tf.constant(x, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = fn(x)
        loss = tf.reduce_sum(y * (upstream if upstream is not None else 1.0))
    return y.numpy(), tape.gradient(loss, x).numpy()


def test_approx_sign_gradient_is_2_minus_2abs():
    x = np.array([-1.5, -1.0 - 1e-3, -0.75, -0.25, 0.0, 0.3, 0.9, 1.2, 7.0])
    y, grad = _gradient(lq.quantizers.ApproxSign(), x)
    np.testing.assert_array_equal(y, [-1, -1, -1, -1, 1, 1, 1, 1, 1])
    expected = np.where(np.abs(x) < 1, 2 - 2 * np.abs(x), 0.0)
    np.testing.assert_allclose(grad, expected, atol=1e-6)


def test_channel_scaled_sign_forward_hand_computed():
    # kernel (kh=1, kw=1, in=3, out=2)
    w = np.array([[[[0.2, -2.0], [-0.4, 1.0], [0.0, 0.5]]]])
    y, _ = _gradient(ChannelScaledSign(), w)
    alpha = np.array([(0.2 + 0.4 + 0.0) / 3, (2.0 + 1.0 + 0.5) / 3])
    expected = alpha * np.array([[[[1, -1], [-1, 1], [1, 1]]]])  # sign(0) = +1
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_channel_scaled_sign_gradient_is_clipped_straight_through():
    w = np.array([[[[0.2, -2.0], [-0.4, 1.5], [0.0, 0.5]]]])
    upstream = tf.constant(np.arange(1, 7, dtype="float32").reshape(w.shape))
    _, grad = _gradient(ChannelScaledSign(), w, upstream)
    # 1 where |w| < 1, 0 beyond; no alpha factor and no gradient through alpha.
    expected = np.where(np.abs(w) < 1, upstream.numpy(), 0.0)
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_larq_magnitude_aware_sign_gradient_differs():
    """Why ChannelScaledSign exists: larq's version scales the gradient by alpha."""
    w = np.full((1, 1, 2, 1), 5e-4)
    _, ours = _gradient(ChannelScaledSign(), w)
    _, larqs = _gradient(lq.quantizers.MagnitudeAwareSign(), w)
    np.testing.assert_allclose(ours, 1.0)
    np.testing.assert_allclose(larqs, 5e-4, rtol=1e-3)


@pytest.mark.parametrize("quantizer", [ChannelScaledSign(flip_spatial=True), SpatialFlip()])
def test_spatial_flip_rotates_each_filter(quantizer):
    w = np.random.default_rng(0).normal(size=(3, 3, 2, 4))
    y, grad = _gradient(quantizer, w)
    unflipped = type(quantizer)(flip_spatial=False)(tf.constant(w[::-1, ::-1], tf.float32))
    np.testing.assert_allclose(y, unflipped.numpy(), rtol=1e-6)
    if isinstance(quantizer, SpatialFlip):
        np.testing.assert_allclose(y, w[::-1, ::-1], rtol=1e-6)
        np.testing.assert_allclose(grad, 1.0)


def test_quantizers_serialize():
    for quantizer in (ChannelScaledSign(flip_spatial=True), SpatialFlip(flip_spatial=False)):
        restored = type(quantizer).from_config(quantizer.get_config())
        assert restored.flip_spatial == quantizer.flip_spatial
        name = tf.keras.utils.get_registered_name(type(quantizer))
        assert name.startswith("adambnn_larq>")
    assert ChannelScaledSign.precision == 1 and SpatialFlip.precision == 32
