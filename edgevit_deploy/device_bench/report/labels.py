"""Point labels placed without collisions: a small greedy placer on matplotlib's renderer extents.

Each label tries positions around its point on rings of growing distance (right-above first, then the other
seven directions), and takes the first whose text box overlaps no label placed before it, no marker and
nothing the caller asks to avoid (the legend), and lies inside the axes; a label pushed away from its point
gets a thin leader line. Place labels after the figure's layout is final (``fig.tight_layout()`` first, not
after): the boxes are measured in display coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: the eight directions tried on each ring, in order of preference: up-right first (the usual place)
DIRECTIONS: tuple[tuple[int, int], ...] = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
FIRST_RING_PT = 3.0  # distance of the first ring from the point, in points
RING_STEP_PT = 5.0  # each further ring this much farther
RINGS = 30
LEADER_FROM_PT = 10.0  # a label at least this far from its point gets a leader line
MARKER_HALF_PX = 3.0  # half the side of the box kept free around every point


@dataclass(frozen=True)
class PointLabel:
    """One label: its point in data coordinates, its text and style."""

    x: float
    y: float
    text: str
    color: str = "black"
    fontsize: float = 7.0


def _overlaps(box: Any, others: Sequence[Any]) -> bool:
    return any(box.overlaps(o) for o in others)


def _inside(box: Any, frame: Any) -> bool:
    return box.x0 >= frame.x0 and box.y0 >= frame.y0 and box.x1 <= frame.x1 and box.y1 <= frame.y1


def text_box(annotation: Any, renderer: Any) -> Any:
    """The window extent of an annotation's text alone (its leader line excluded)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)
    return Text.get_window_extent(annotation, renderer)


def place_labels(ax: Any, labels: Sequence[PointLabel], avoid: Sequence[Any] = (), pad_px: float = 1.0) -> list[Any]:
    """Annotate ``ax`` with ``labels`` so that no two text boxes overlap (nor a marker, nor a box of
    ``avoid``, e.g. ``legend.get_window_extent()``); returns the annotations, in the order of ``labels``."""
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken: list[Any] = list(avoid)
    for lab in labels:
        px, py = ax.transData.transform((lab.x, lab.y))
        half = MARKER_HALF_PX
        taken.append(Bbox.from_extents(px - half, py - half, px + half, py + half))
    placed: list[Any] = []
    for lab in labels:
        best = None
        for within_axes in (True, False):  # inside the axes if at all possible, else anywhere free
            for ring in range(RINGS):
                dist = FIRST_RING_PT + ring * RING_STEP_PT
                for dx, dy in DIRECTIONS:
                    ann = _annotate(ax, lab, dx * dist, dy * dist, leader=dist >= LEADER_FROM_PT)
                    box = text_box(ann, renderer).padded(pad_px)
                    if not _overlaps(box, taken) and (not within_axes or _inside(box, frame)):
                        best = ann
                        taken.append(box)
                        break
                    ann.remove()
                if best is not None:
                    break
            if best is not None:
                break
        if best is None:  # nowhere free within reach: the preferred place (never happens with a few dozen labels)
            best = _annotate(ax, lab, FIRST_RING_PT, FIRST_RING_PT, leader=False)
            taken.append(text_box(best, renderer).padded(pad_px))
        placed.append(best)
    return placed


def _annotate(ax: Any, lab: PointLabel, dx: float, dy: float, leader: bool) -> Any:
    ha = "left" if dx > 0 else "right" if dx < 0 else "center"
    va = "bottom" if dy > 0 else "top" if dy < 0 else "center"
    arrow = {"arrowstyle": "-", "color": lab.color, "lw": 0.5, "alpha": 0.6, "shrinkA": 0, "shrinkB": 2}
    return ax.annotate(
        lab.text,
        (lab.x, lab.y),
        xytext=(dx, dy),
        textcoords="offset points",
        ha=ha,
        va=va,
        fontsize=lab.fontsize,
        color=lab.color,
        annotation_clip=False,
        arrowprops=arrow if leader else None,
    )
