"""The one way this package makes LCE's interpreter: a kernel name (`INTERPRETER_KERNELS`)
becomes the flags of LCE's public ``Interpreter`` here, for verification, the host benchmark
and the per-op profile alike, so that the three run the same kernels for the same name."""

from __future__ import annotations

from larq_compute_engine.tflite.python.interpreter import Interpreter

from adambnn_larq.config import INTERPRETER_KERNELS
from adambnn_larq.logs import quiet_native_stderr


def lce_interpreter(
    flatbuffer: bytes, *, kernel: str = "default", threads: int = 1, use_xnnpack: bool = False
) -> Interpreter:
    """LCE's interpreter for ``flatbuffer`` with the binary-conv ``kernel``.

    Arguments:
        flatbuffer: a converted model.
        kernel: ``"default"`` (LCE's choice), ``"indirect_bgemm"`` or ``"reference"`` (the plain
            reference implementation).
        threads: interpreter threads.
        use_xnnpack: TFLite's XNNPACK delegate for the float ops.

    Its ``.interpreter.predict(inputs)`` runs one batch-1 input list with no Python data
    pipeline: what the timings use.
    """
    if kernel not in INTERPRETER_KERNELS:
        raise ValueError(f"kernel must be one of {INTERPRETER_KERNELS}, got {kernel!r}")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    with quiet_native_stderr():  # TFLite's "INFO: Created ... delegate" lines
        return Interpreter(
            flatbuffer,
            num_threads=threads,
            use_reference_bconv=kernel == "reference",
            use_indirect_bgemm=kernel == "indirect_bgemm",
            use_xnnpack=use_xnnpack,
        )
