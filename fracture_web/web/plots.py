"""The site page's two plots as coordinates in an SVG's user units, for ``templates/site.html`` to draw:
no plotting library at request time. Values run from the bottom-left corner of the plot area."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..reads.statistics import ReliabilityBin, ShareWindow

#: The plot area inside each SVG: left, top, width, height (room for the axes' labels around it).
LEFT, TOP, WIDTH, HEIGHT = 44.0, 10.0, 200.0, 160.0


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str  # what the point says, for its tooltip and the table beside the plot


def _x(fraction: float) -> float:
    return round(LEFT + WIDTH * fraction, 1)


def _y(fraction: float) -> float:
    return round(TOP + HEIGHT * (1 - fraction), 1)


def reliability_points(bins: Sequence[ReliabilityBin]) -> list[Point]:
    """Each bin at (mean probability the model gave, share the readers called fractured)."""
    return [Point(_x(b.mean_probability), _y(b.observed),
                  f"{b.count} image{'s' if b.count != 1 else ''}: model {b.mean_probability:.0%}, "
                  f"readers {b.observed:.0%} fractured") for b in bins]


@dataclass(frozen=True)
class SharePlot:
    """The fractured share per window as points, the expected range as a band (an SVG polygon), the scale's top."""

    points: list[Point]
    band: str
    top: float

    def y(self, share: float) -> float:
        return _y(share / self.top)


def share_plot(windows: Sequence[ShareWindow]) -> SharePlot | None:
    """The share of each window against its expected range, windows spread evenly left to right."""
    if not windows:
        return None
    top = min(1.0, max(max(w.high, w.share) for w in windows) * 1.2 + 0.05)
    step = WIDTH / len(windows)
    centres = [LEFT + step * (i + 0.5) for i in range(len(windows))]
    upper = [f"{c - step / 2:.1f},{_y(w.high / top)} {c + step / 2:.1f},{_y(w.high / top)}"
             for c, w in zip(centres, windows)]
    lower = [f"{c + step / 2:.1f},{_y(w.low / top)} {c - step / 2:.1f},{_y(w.low / top)}"
             for c, w in reversed(list(zip(centres, windows)))]
    points = [Point(round(c, 1), _y(w.share / top),
                    f"images {w.first}-{w.last}: {w.share:.0%} fractured (expected {w.low:.0%}-{w.high:.0%})")
              for c, w in zip(centres, windows)]
    return SharePlot(points, " ".join(upper + lower), top)
