"""The errors raised for radar files (and sequences of them) that cannot be read."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dacast.io.sequence import SequenceReport


class RadarReadError(ValueError):
    """A radar file (or a whole sequence) could not be read.

    The message is a single line that names the file (or the source and time
    window) and the reason, e.g. ``cannot read /x/AQC...gif: not a GIF image``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class SequenceReadError(RadarReadError):
    """:func:`~dacast.io.load_sequence` read no frame at all, or ``strict`` and the sequence is incomplete.

    Attributes:
        report: what was expected, read, missing and unreadable (each unreadable
            file with its error), as when the load succeeds.
    """

    def __init__(self, message: str, report: SequenceReport) -> None:
        super().__init__(message)
        self.report = report

    def __reduce__(self) -> tuple[type[SequenceReadError], tuple[str, SequenceReport]]:
        return type(self), (str(self), self.report)
