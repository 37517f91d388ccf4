"""
A small long-running program whose behaviour comes from another module.

Run it under live reloading and edit ``greeting.py`` while it runs::

    versionload run --watch examples/live_app examples/live_app/app.py

Each tick calls ``greeting.message()`` through the module, so a reload of
``greeting`` changes the very next line this prints.
"""

# no-run: runs until stopped; tests/test_docs.py runs demo.py, which drives this script.

from __future__ import annotations

import sys
import time

import greeting


def main(ticks: int, interval: float) -> None:
    for tick in range(1, ticks + 1):
        print(f"tick {tick}: {greeting.message()}", flush=True)
        time.sleep(interval)


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
    )
