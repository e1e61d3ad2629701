"""Converters around the adambnn_larq library: PyTorch checkpoint import and LCE conversion."""
