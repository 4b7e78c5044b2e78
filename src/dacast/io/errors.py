"""The error raised for radar files that cannot be read."""

from __future__ import annotations


class RadarReadError(ValueError):
    """A radar file (or a whole sequence) could not be read.

    The message is a single line that names the file (or the source and time
    window) and the reason, e.g. ``cannot read /x/AQC...gif: not a GIF image``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
