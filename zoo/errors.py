"""Errors a user can act on.

Every error zoo raises on purpose is a ``ZooError``: one line saying what is
wrong and what to do next. The CLI prints it without a traceback and exits
non-zero; the service turns it into a 4xx. Anything else is a bug.
"""

from __future__ import annotations

__all__ = [
    "ZooError",
    "ModelNotFound",
    "ModelExists",
    "InvalidSource",
    "SourceUnavailable",
    "RevisionNotFound",
    "NotAModel",
    "ArtifactNotFound",
    "MissingExtra",
    "InvalidInput",
    "StoreCorruption",
    "UntrustedCode",
    "CodeChanged",
    "disk_full",
]


class ZooError(Exception):
    """Base class: a clear, one-line, actionable message."""

    exit_code = 1


class ModelNotFound(ZooError):
    pass


class ModelExists(ZooError):
    pass


class InvalidSource(ZooError):
    pass


class SourceUnavailable(ZooError):
    pass


class RevisionNotFound(ZooError):
    pass


class NotAModel(ZooError):
    pass


class ArtifactNotFound(ZooError):
    pass


class InvalidInput(ZooError):
    """``param``: which request field is wrong (``input[3]``), for the service's OpenAI-style error."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.param, self.code = param, code


class StoreCorruption(ZooError):
    pass


class UntrustedCode(NotAModel):
    """A model folder asks to run its own code and the operator has not trusted it."""


class CodeChanged(StoreCorruption):
    """A trusted model's code no longer matches the sha256 recorded when it was trusted."""


class MissingExtra(ZooError):
    """A heavy optional library is not installed; say which extra brings it."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"{module} is not installed; install it with: pip install 'zoo[{extra}]' "
            f"-c constraints.txt"
        )
        self.module = module
        self.extra = extra


def require(module: str, extra: str):
    """Import an optional heavy module or raise ``MissingExtra`` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        if exc.name and exc.name.split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtra(module, extra) from exc


def disk_full(exc: BaseException) -> bool:
    """Whether ``exc``, or what it was raised from, is a write that found no space left.

    Libraries wrap the ``OSError`` (pyarrow's ``ArrowIOError``, SQLAlchemy's ``OperationalError``,
    Ray's task errors), so the chain and the message are both read."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
