"""The one place that draws with matplotlib: the file-only backend, and saving a figure.

    plt = pyplot()                       # matplotlib.pyplot on Agg: no display needed, any thread
    fig, ax = plt.subplots(...)
    ...
    return save(fig, path, dpi=90)       # tight layout, write, close (no figure left open); the path
"""

from __future__ import annotations

from pathlib import Path


def pyplot():
    """matplotlib.pyplot with the Agg backend (pictures are written to files, never shown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi: int = 100, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay `fig` out tightly (within `rect`, room left for a legend or title), write it to `path` and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout(**({"rect": rect} if rect is not None else {}))
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return Path(path)
