"""Independent NumPy implementation of a ReActNet-A block, written from docs/method.md §2.

It uses PyTorch's conventions (no image rotation, symmetric zero padding of 1 for 3x3 convs,
sign(0) = +1 as in larq) and float64, so it shares no code path with the Keras model.
"""

from __future__ import annotations

import numpy as np


def sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def conv2d(x, kernel, stride):
    """x: (H, W, C); kernel: (kh, kw, C, O); PyTorch padding (k - 1) / 2 on every side."""
    kh, kw, _, out_channels = kernel.shape
    pad = (kh - 1) // 2
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
    height = (x.shape[0] + 2 * pad - kh) // stride + 1
    width = (x.shape[1] + 2 * pad - kw) // stride + 1
    out = np.zeros((height, width, out_channels))
    for i in range(height):
        for j in range(width):
            patch = xp[i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[i, j] = np.tensordot(patch, kernel, axes=([0, 1, 2], [0, 1, 2]))
    return out


def binarize_kernel(kernel):
    """alpha_o * sign(W) with alpha_o = mean |W_o| over (kh, kw, in)."""
    alpha = np.abs(kernel).mean(axis=(0, 1, 2))
    return alpha * sign(kernel)


def batch_norm(x, gamma, beta, mean, var, eps=1e-5):
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def rprelu(x, shift_in, alpha, shift_out):
    z = x + shift_in
    return np.where(z > 0, z, alpha * z) + shift_out


def avg_pool2(x):
    h, w, c = x.shape
    return x[: h // 2 * 2, : w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))


def block(x, p, stride, binary_weights=True):
    """One block; ``p`` maps reference names (move11, binary_3x3, bn1, ...) to arrays."""
    weight = binarize_kernel if binary_weights else (lambda k: k)
    a = sign(x + p["move11"])
    y = batch_norm(conv2d(a, weight(p["binary_3x3"]), stride), *p["bn1"])
    shortcut = avg_pool2(x) if stride == 2 else x
    y = rprelu(y + shortcut, p["move12"], p["prelu1"], p["move13"])
    a2 = sign(y + p["move21"])
    if "binary_pw" in p:
        out = batch_norm(conv2d(a2, weight(p["binary_pw"]), 1), *p["bn2"]) + y
    else:
        out1 = batch_norm(conv2d(a2, weight(p["binary_pw_down1"]), 1), *p["bn2_1"]) + y
        out2 = batch_norm(conv2d(a2, weight(p["binary_pw_down2"]), 1), *p["bn2_2"]) + y
        out = np.concatenate([out1, out2], axis=-1)
    return rprelu(out, p["move22"], p["prelu2"], p["move23"])


def pre_sign_margins(x, p, stride, binary_weights=True):
    """Smallest |input| of the two signs: tests need it well away from 0 to be meaningful."""
    weight = binarize_kernel if binary_weights else (lambda k: k)
    first = x + p["move11"]
    y = batch_norm(conv2d(sign(first), weight(p["binary_3x3"]), stride), *p["bn1"])
    shortcut = avg_pool2(x) if stride == 2 else x
    y = rprelu(y + shortcut, p["move12"], p["prelu1"], p["move13"])
    return float(np.abs(first).min()), float(np.abs(y + p["move21"]).min())
