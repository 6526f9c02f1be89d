"""Progress reporting for long loops, without a dependency on any console library.

Library code takes a `Track` and wraps its loops in it; the CLI passes a rich progress bar
(`cli.track`), everything else (tests, Ray workers, benchmarks) the silent default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

Track = Callable[[Iterable, str], Iterable]  # (items, description) -> the same items


def no_progress(items: Iterable, description: str) -> Iterable:
    return items
