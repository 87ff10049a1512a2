"""The one paper style every figure uses: fonts, spines, grid, colours, and saving."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
from matplotlib.figure import Figure

# PDF font subsetting logs every table it prunes at INFO, which floods Hydra's console logger.
logging.getLogger("fontTools").setLevel(logging.WARNING)

# Okabe & Ito (2008) colour-blind-safe palette, black dropped (reserved for annotations).
# Okabe-Ito's 8 colour-blind-safe colours: 8 settings (a leave-one-out sweep) stay distinct
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
# Fixed colours and markers per model label, so SFT and RL look the same in every figure.
MODEL_COLORS = {"sft": "#0072B2", "base": "#0072B2", "instruct": "#0072B2", "rl": "#D55E00"}
MODEL_MARKERS = {"sft": "o", "base": "o", "instruct": "o", "rl": "s"}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
COLUMN_WIDTH = 3.4  # inches, one column of a two-column paper
TEXT_WIDTH = 6.8  # inches, the full text width

RC = {
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.8,
    "axes.grid": True,
    "grid.color": "#b0b0b0",
    "grid.linewidth": 0.5,
    "grid.alpha": 0.5,
    "axes.axisbelow": True,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "figure.figsize": (COLUMN_WIDTH, 2.4),
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "pdf.fonttype": 42,  # embed TrueType, so the text stays editable and searchable
    "ps.fonttype": 42,
}


@contextmanager
def paper_style() -> Iterator[None]:
    """Apply the paper rcParams inside the block (figures must be created and saved there)."""
    with mpl.rc_context(RC):
        yield


def model_color(label: str, index: int = 0) -> str:
    """Fixed colour for known model labels (SFT blue, RL vermillion), else the palette."""
    return MODEL_COLORS.get(str(label).lower(), PALETTE[(index + 2) % len(PALETTE)])


def model_marker(label: str, index: int = 0) -> str:
    return MODEL_MARKERS.get(str(label).lower(), MARKERS[(index + 2) % len(MARKERS)])


def series_styles(labels: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(colour, marker) per label: fixed for model names, the palette in order otherwise."""
    if all(str(x).lower() in MODEL_COLORS for x in labels):
        return {x: (model_color(x), model_marker(x)) for x in labels}
    n = len(PALETTE)
    return {x: (PALETTE[i % n], MARKERS[i % len(MARKERS)]) for i, x in enumerate(labels)}


def save_figure(fig: Figure, path: str | Path) -> list[Path]:
    """Write ``path.pdf`` and ``path.png`` (300 dpi, tight bbox); returns both paths."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".pdf", ".png") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    out = [base.with_name(base.name + ext) for ext in (".pdf", ".png")]
    if fig.get_layout_engine() is not None:  # lay out once, not once per file
        fig.draw_without_rendering()
        fig.set_layout_engine("none")
    for p in out:
        fig.savefig(p, dpi=300, bbox_inches="tight", pad_inches=0.02)
    return out
