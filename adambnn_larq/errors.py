"""The errors the library raises for a user's mistake or a failed job, as opposed to bugs.

Every one derives from `AdambnnError`; its message is one or a few lines meant for the user (it
names the file, field or option and the fix). The ``adambnn`` command prints such an error
without a traceback and exits with status 2 (`adambnn_larq.cli.main`); Python callers catch
the subclass they care about. Each also derives from the built-in exception that code written
before this module caught (``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so those
``except`` clauses keep working.

This module imports nothing: every layer may use it.
"""

from __future__ import annotations


class AdambnnError(Exception):
    """Base of the user-facing errors: printed without a traceback, exit status 2."""


class ConfigError(AdambnnError, ValueError):
    """An invalid recipe or override."""


class RecipeNotFoundError(AdambnnError, FileNotFoundError):
    """No recipe or study of that name (the project's own) or path."""


class MissingFileError(AdambnnError, FileNotFoundError):
    """An input file the user named (a teacher, a model) does not exist."""


class ModelFileError(AdambnnError, ValueError):
    """A model file that is not a readable Keras model file."""


class RunDirError(AdambnnError, ValueError):
    """A run directory that may not be written or resumed (not this project's, another
    configuration or input, in use by another process); the message says why and the fix."""


class OutputError(AdambnnError, ValueError):
    """An output location that cannot be written, found before the work that would fill it."""


class DataNotFoundError(AdambnnError, FileNotFoundError):
    """A dataset's files are missing; the message says which file to put where."""


class DataIntegrityError(AdambnnError, ValueError):
    """A data file is corrupt, truncated or not the expected file; the message names it."""


class UnsafeModelError(AdambnnError, ValueError):
    """A model file names code to run (a Lambda layer, a foreign module or function) to be
    deserialized."""


class TrainingDiverged(AdambnnError, RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointUnreadable(AdambnnError, ValueError):
    """No checkpoint of a stage can be restored; the message names the files and the fix."""


class ReportError(AdambnnError, ValueError):
    """A run directory cannot be read: the message names the file and the field."""


class StudyError(AdambnnError, ValueError):
    """A malformed study file; the message names the field."""


class ConversionError(AdambnnError, ValueError):
    """The model cannot be converted as asked (bad input, or a `strict` audit failed)."""


class RemoteSpecError(AdambnnError, ValueError):
    """A ``--remote`` destination that is not ``USER@HOST[:PORT]`` (e.g. an ssh option)."""


class ModelMismatchError(AdambnnError, ValueError):
    """Two files that should hold the same model (Keras and TFLite) do not, or the inputs do
    not fit it."""


class BenchmarkError(AdambnnError, RuntimeError):
    """The benchmark could not run or its output could not be read."""


class CheckpointError(AdambnnError, ValueError):
    """A checkpoint cannot be imported: unreadable, unsafe, or not the expected network."""


class DemoError(AdambnnError, RuntimeError):
    """A stage of the demo failed (the message says which and what was kept)."""
