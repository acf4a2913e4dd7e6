"""Run every benchmark in bench/ one after the other (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = ["bench_fixity.py", "bench_bag_validate.py", "bench_ingest.py",
           "bench_download.py", "bench_api_metadata.py"]

if __name__ == "__main__":
    failed = 0
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        failed |= subprocess.call([sys.executable, str(HERE / script)]) != 0
    sys.exit(1 if failed else 0)
