"""Write the AFGL standard atmospheres used as the column model's base state (needs the ``rt`` extra).

The six profiles (tropical, mid-latitude summer/winter, sub-arctic summer/winter,
US standard) are the AFGL atmospheric constituent profiles of Anderson et al.
(1986, AFGL-TR-86-0110), a public-domain data set that pyrtlib distributes. Only
the numbers are stored (pressure, temperature, specific humidity on the 50 AFGL
levels); no pyrtlib code is copied::

    pip install -e ".[rt]"
    python tools/build_column_climatology.py            # -> src/dacast/models/data/afgl_profiles.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "src" / "dacast" / "models" / "data" / "afgl_profiles.npz"
NAMES = ("tropical", "midlatitude_summer", "midlatitude_winter", "subarctic_summer", "subarctic_winter", "us_standard")
#: Molar masses of water and dry air (g/mol) for ppmv -> mixing ratio.
M_H2O, M_AIR = 18.01528, 28.9644


def main() -> None:
    """Read the profiles through pyrtlib and write them with provenance."""
    from pyrtlib.climatology import AtmosphericProfiles as atmp
    from pyrtlib.version import __version__

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    p, t, q, z = [], [], [], []
    for index in range(len(NAMES)):
        zk, pk, _, tk, md = atmp.gl_atm(index)
        w = md[:, atmp.H2O] * 1e-6 * M_H2O / M_AIR  # kg/kg mixing ratio
        p.append(pk)
        t.append(tk)
        q.append(1e3 * w / (1.0 + w))  # specific humidity, g/kg
        z.append(zk)
    meta = {
        "source": "AFGL atmospheric constituent profiles (Anderson et al. 1986, AFGL-TR-86-0110), read via pyrtlib",
        "pyrtlib_version": __version__,
        "names": list(NAMES),
        "units": {"pressure": "hPa", "temperature": "K", "specific_humidity": "g/kg", "height": "km"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        args.out,
        names=np.array(NAMES),
        pressure=np.array(p, dtype=np.float64),
        temperature=np.array(t, dtype=np.float64),
        specific_humidity=np.array(q, dtype=np.float64),
        height=np.array(z, dtype=np.float64),
        meta=np.array(json.dumps(meta)),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
