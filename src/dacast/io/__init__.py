"""Radar composites in, xarray out: readers, dBZ conversion, sequences and event listing.

Sources (see ``shared/data/radar/README.md``): MeteoSwiss AQC GIF (``mch``),
FMI lowest-CAPPI PGM.gz (``fmi``) and KNMI 5-min HDF5 accumulations (``knmi``).
Frames are ``rain_rate`` DataArrays of shape ``(y, x)`` in mm/h (NaN = no
data); sequences are ``(time, y, x)`` with a :class:`SequenceReport` listing
gaps and unreadable files.
"""

from dacast.io.convert import DEFAULT_ZERO_DBZ, from_dbz, to_dbz
from dacast.io.errors import RadarReadError, SequenceReadError
from dacast.io.events import RadarEvent, list_events
from dacast.io.paths import default_radar_root
from dacast.io.readers import read_fmi_pgm, read_knmi_hdf5, read_mch_gif, read_radar
from dacast.io.sequence import (
    FrameFile,
    SequenceReport,
    UnreadableFrame,
    find_frames,
    load_sequence,
    valid_mask,
)
from dacast.io.sources import SOURCES, SPECS, Source, SourceSpec

__all__ = [
    "DEFAULT_ZERO_DBZ",
    "SOURCES",
    "SPECS",
    "FrameFile",
    "RadarEvent",
    "RadarReadError",
    "SequenceReadError",
    "SequenceReport",
    "Source",
    "SourceSpec",
    "UnreadableFrame",
    "default_radar_root",
    "find_frames",
    "from_dbz",
    "list_events",
    "load_sequence",
    "read_fmi_pgm",
    "read_knmi_hdf5",
    "read_mch_gif",
    "read_radar",
    "to_dbz",
    "valid_mask",
]
