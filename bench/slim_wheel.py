"""Drop from a wheel the shared libraries built for other CUDA/ROCm versions than ``--keep``.

    python bench/slim_wheel.py .whl/bitsandbytes-*.whl --keep cuda13

bitsandbytes ships one library per CUDA and ROCm release (about 130 MB unpacked, 43 MB as a
wheel); a lent device machine runs one CUDA (13 with torch cu130), and everything carried there
must fit in 64 MiB with the working tree. The wheel is rewritten in place, its RECORD kept in
step, so pip installs it as usual.
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path


def slim(wheel: Path, keep: str) -> tuple[int, int]:
    """Rewrite ``wheel`` without ``lib*_(cuda|rocm)*.so`` files not matching ``keep``; (bytes before, after)."""
    gpu_lib = re.compile(r"lib\w+_(cuda|rocm)\w*\.so$")
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        dropped = {i.filename for i in src.infolist() if gpu_lib.search(i.filename) and keep not in i.filename}
        for info in src.infolist():
            if info.filename in dropped:
                continue
            data = src.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                data = "".join(line + "\n" for line in data.decode().splitlines() if line.split(",")[0] not in dropped).encode()
            dst.writestr(info, data)
    tmp.replace(wheel)
    return before, wheel.stat().st_size


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+", type=Path)
    parser.add_argument("--keep", default="cuda13")
    args = parser.parse_args()
    for wheel in args.wheels:
        before, after = slim(wheel, args.keep)
        print(f"{wheel.name}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
