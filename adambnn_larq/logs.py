"""A command prints its own output; TensorFlow's, absl's and TFLite's log lines only with
``adambnn --verbose``.

TensorFlow's C++ start-up lines (CUDA factory registration, even on CPU machines) obey
``TF_CPP_MIN_LOG_LEVEL``, read once when TensorFlow's library loads, so `configure` runs before
anything imports TensorFlow. The TFLite converter's absl lines and the interpreter's
``INFO: Created TensorFlow Lite XNNPACK delegate`` are written by C++ straight to the
process' stderr whatever the level: `quiet_native_stderr` hides them around those calls. The
choice is passed to child processes (``adambnn study --jobs N``) in `ENV`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import TextIO

#: "0": hide TensorFlow's own log lines (set by the ``adambnn`` command); "1": show them.
#: Unset (the Python API): nothing is hidden.
ENV = "ADAMBNN_TF_LOGS"

_retired: list = []  # Python's stderr streams of finished blocks (see quiet_native_stderr)


def configure(verbose: bool) -> None:
    """Hide (or, with ``verbose``, keep) TensorFlow's, absl's and TFLite's log lines."""
    os.environ[ENV] = "1" if verbose else "0"
    if verbose:
        return
    # Level 3 drops TensorFlow's C++ INFO, WARNING and ERROR lines (the "Unable to register
    # cuFFT factory" ones are ERROR): a user's 2 would still show them.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    # AutoGraph's notes about larq's QuantizedVariable and Keras' compile notes.
    os.environ.setdefault("AUTOGRAPH_VERBOSITY", "0")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # absl configures its own logger class when imported: set the level through absl. Lazy:
    # importing it takes longer than all of `import adambnn_larq.cli`.
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


def quiet() -> bool:
    """Whether native log lines are hidden (the ``adambnn`` command without ``--verbose``)."""
    return os.environ.get(ENV) == "0"


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hide what native code writes to the process' stderr (file descriptor 2) in the block.

    Python's own ``sys.stderr`` (progress lines, other threads) still reaches the terminal.
    If the block raises, the hidden lines are printed after all: they may explain the error.
    Does nothing unless `quiet`.
    """
    if not quiet():
        yield
        return
    while _retired:
        _retired.pop().close()
    try:
        python_uses_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        python_uses_fd2 = False
    sys.stderr.flush()
    saved = os.dup(2)
    original_stderr = sys.stderr
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        if python_uses_fd2:
            sys.stderr = open(  # noqa: SIM115 - see below
                os.dup(saved),
                "w",
                buffering=1,
                encoding=original_stderr.encoding,
                errors="backslashreplace",
            )
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            if python_uses_fd2:
                # Closed only at the next block: another thread may still be printing to it.
                sys.stderr.flush()
                _retired.append(sys.stderr)
                sys.stderr = original_stderr
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                capture.seek(0)
                hidden = capture.read().decode(errors="replace")
                if hidden:
                    print(hidden, end="", file=sys.stderr, flush=True)


@contextlib.contextmanager
def heartbeat(
    message: str, *, every: float = 10.0, stream: TextIO | None = None, enabled: bool = True
) -> Iterator[None]:
    """Print ``message`` now and the elapsed time every ``every`` seconds until the block ends.

    The LCE converter is a single opaque call that can take minutes; this shows it is alive.

    Arguments:
        message: what is running.
        every: seconds between progress lines.
        stream: where to print (default: ``sys.stderr``).
        enabled: False makes this a no-op (quiet mode).
    """
    if not enabled:
        yield
        return

    def say(text: str) -> None:
        # sys.stderr is looked up each time: `quiet_native_stderr` may have replaced it.
        print(text, file=stream or sys.stderr, flush=True)

    start = time.monotonic()
    say(f"{message} ...")
    done = threading.Event()

    def tick() -> None:
        while not done.wait(every):
            say(f"  ... {time.monotonic() - start:.0f} s")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
    say(f"  done in {time.monotonic() - start:.1f} s")
