"""What every rxbus sink shares: it owns resources, so it is a context manager that closes."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["ClosingSink"]


class ClosingSink(ABC):
    """A sink that releases its resources in :meth:`close`; ``with sink:`` closes it on exit."""

    @abstractmethod
    def close(self) -> object:
        """Release the sink's resources (flushing what it holds first). Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
