"""User-facing errors: one line that names the file, column or value at fault."""


class MlcycleError(Exception):
    """An error caused by the user's input or configuration, reported in one line.

    The CLI prints ``str(error)`` and exits with ``exit_code``; no traceback.
    """

    exit_code = 2


class DataError(MlcycleError):
    """The data source is missing, unreadable, or does not fit the task."""


class ConfigError(MlcycleError):
    """The composed configuration is invalid."""


class TuningFailed(MlcycleError, RuntimeError):
    """No tuning trial gave a score (each raised, or scored NaN/inf); names the first error."""


class PipelineTerminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM.

    A BaseException so that stage code catching ``Exception`` does not swallow it; the run
    contexts end the open runs KILLED on their way out.
    """


class TrackingUnreachable(MlcycleError):
    """The tracking store (server or database) cannot be reached or refuses the credentials."""

    exit_code = 3


class StoreSchemaError(MlcycleError):
    """The tracking database's schema is not the one this MLflow uses: older (``mlcycle db
    upgrade`` migrates it after a backup) or unknown (written by a newer MLflow)."""

    exit_code = 4


class LineageError(MlcycleError):
    """A run or model version cannot be traced back to what made it."""


class JobFailed(BaseException):
    """Carries a Hydra job's exception past Hydra's own reporting (which catches Exception
    and prints it on several lines) to the CLI's one handler (``cli.handle``)."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
