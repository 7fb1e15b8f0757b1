"""One look for every figure: a fixed colour per agent, the same in every env and figure, and the reference lines'
styles."""

from __future__ import annotations

from collections.abc import Iterable

#: the agent a label belongs to is its longest prefix here (``varibad_5e7`` -> varibad, ``rl2 (shipped)`` -> rl2)
AGENT_COLORS: dict[str, str] = {
    "varibad": "#1f77b4",  # blue
    "rl2": "#d62728",  # red
    "pearl": "#2ca02c",  # green
    "posterior_sampling_exact": "#8c564b",  # brown
    "posterior_sampling": "#9467bd",  # purple
    "oracle": "#ff7f0e",  # orange
    "random": "#7f7f7f",  # grey
}
#: labels that belong to no agent above (a user's own algorithm): colours no agent uses, by a stable hash
OTHER_COLORS = ("#17becf", "#bcbd22", "#e377c2", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")

REFERENCE_STYLE: dict[str, tuple[str, str, str]] = {  # key -> (color, linestyle, label)
    "optimal": ("black", "--", "optimal (knows the goal)"),
    "bayes_optimal": ("tab:gray", "-.", "Bayes-optimal"),
    "posterior_sampling": ("tab:brown", ":", "posterior sampling"),
    "searcher": ("tab:gray", "-.", "semicircle searcher"),
}


def agent_of(label: str) -> str | None:
    """The agent of a run label (its longest known prefix), or ``None``."""
    matches = [agent for agent in AGENT_COLORS if label == agent or label.startswith((f"{agent}_", f"{agent} "))]
    return max(matches, key=len) if matches else None


def agent_color(label: str) -> str:
    """The agent's fixed colour; a label of no known agent gets one of :data:`OTHER_COLORS`, the same every time."""
    agent = agent_of(label)
    if agent is not None:
        return AGENT_COLORS[agent]
    return OTHER_COLORS[sum(map(ord, label)) % len(OTHER_COLORS)]


def reference_style(name: str, index: int) -> tuple[str, object, str]:
    """(colour, line style, legend text) of a reference line."""
    return REFERENCE_STYLE.get(name, (f"C{7 + index % 3}", (0, (3, 1, 1, 1)), name.replace("_", " ")))


def _shade(color: str, amount: float) -> str:
    """``color`` mixed with white (``amount`` > 0) or black (< 0)."""
    from matplotlib.colors import to_hex, to_rgb

    rgb = to_rgb(color)
    target = 1.0 if amount > 0 else 0.0
    return to_hex(tuple(c + (target - c) * abs(amount) for c in rgb))


#: how the 2nd, 3rd, ... label of one agent in a figure is told apart: the agent's hue, lighter or darker
SHADES = (0.0, 0.45, -0.35, 0.7, -0.55)


def label_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour for every label of a figure: the agent's fixed colour, in shades where one agent has several labels
    (``varibad`` and ``varibad (shipped)``)."""
    return {label: str(style["color"]) for label, style in label_styles(labels).items()}


#: how labels of one agent are told apart beyond their shade (ablation variants of VariBAD share its hue): the n-th
#: label of an agent gets the n-th marker and line style
MARKERS = ("o", "s", "^", "D", "v", "P")
LINESTYLES: tuple[object, ...] = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))


def label_styles(labels: Iterable[str]) -> dict[str, dict[str, object]]:
    """Matplotlib keyword arguments (``color``, ``marker``, ``linestyle``) per label: the agent's fixed colour for its
    first label and, for its 2nd, 3rd, ... label, a shade of it (:data:`SHADES`), a marker and a line style of its
    own."""
    seen: dict[str, int] = {}
    styles: dict[str, dict[str, object]] = {}
    for label in sorted(set(labels)):
        base = agent_color(label)
        index = seen.get(base, 0)
        seen[base] = index + 1
        styles[label] = {"color": base if index == 0 else _shade(base, SHADES[index % len(SHADES)]),
                         "marker": MARKERS[index % len(MARKERS)], "linestyle": LINESTYLES[index % len(LINESTYLES)]}
    return styles


def legend_columns(labels: Iterable[str], width_inches: float, fontsize: float, most: int = 4) -> int:
    """How many legend columns fit ``labels`` across a figure ``width_inches`` wide: a legend below the axes never
    runs off the figure's sides (a character is about 0.6 em wide; the handle and the gaps take about 6)."""
    labels = list(labels)
    if not labels:
        return 1
    entry = (max(len(label) for label in labels) + 6) * 0.6 * fontsize / 72
    return max(1, min(most, len(labels), int(width_inches // entry)))
