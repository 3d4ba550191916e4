"""``--report DIR``: PNG plots and a Markdown summary of an evaluation, for a person to look at.

Plots (each drawn only when its inputs exist):

- ``scores.png``: histograms of the score by label (same / different pairs), with the decision threshold;
  for STS a scatter of the score against the gold similarity;
- ``roc.png`` and ``precision_recall.png``: the threshold-free curves, with the chosen operating point;
- ``reliability.png``: observed frequency of "same" against predicted probability, per bin (calibrated
  probabilities and the raw cosine read as a probability), with the diagonal of perfect calibration;
- ``confusion.png``: the confusion matrix at the threshold;
- ``pca.png``: a 2-D PCA of embeddings coloured by label or class (for pairs, the vector |u − v| of each pair,
  so same and different pairs can be told apart; with a class column, the first texts by class).

Matplotlib is used through its object API with the Agg canvas: no window, no global pyplot state.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from textsiamese.data import atomic_open
from textsiamese.errors import ConfigError

MAX_PCA_POINTS = 3000
LABEL_NAMES = ("different", "same")
NAME_SETS = (LABEL_NAMES, ("not relevant", "relevant"), ("negative", "positive"))


def _figure(width: float = 5.5, height: float = 4.2) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("--report needs matplotlib: pip install 'textsiamese[report]'") from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png")
    _readable(path)
    return path


def _readable(path: Path) -> None:
    """Give a written file the usual permissions (the temporary file it came from was private)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def _is_similarity(metric: str) -> bool:
    from textsiamese.model.distances import get_distance

    return get_distance(metric).higher_is_closer


def plot_scores(
    path: Path,
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float | None,
    score_label: str,
    label_names: tuple[str, str] = LABEL_NAMES,
) -> Path:
    fig = _figure()
    ax = fig.subplots()
    bins = np.histogram_bin_edges(scores, bins=40)
    counts = [int((labels == 0).sum()), int((labels == 1).sum())]
    # Very unequal classes (retrieval: one relevant document among many): compare shapes, not counts.
    density = min(counts) > 0 and max(counts) > 5 * min(counts)
    for value, colour in ((0, "tab:red"), (1, "tab:blue")):
        chosen = scores[labels == value]
        if chosen.size:
            name = f"{label_names[value]} ({value}), n={chosen.size}"
            ax.hist(chosen, bins=bins, alpha=0.55, color=colour, density=density, label=name)
    if threshold is not None:
        ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel(score_label)
    ax.set_ylabel("density (area 1 per label)" if density else "pairs")
    ax.set_title("Score distribution by label")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sts(path: Path, scores: np.ndarray, gold: np.ndarray, metric: str) -> Path:
    fig = _figure()
    ax = fig.subplots()
    ax.scatter(gold, scores, s=6, alpha=0.4)
    ax.set_xlabel("gold similarity")
    ax.set_ylabel(f"{metric} score")
    ax.set_title("Model score against gold similarity")
    return _save(fig, path)


def plot_roc_pr(
    directory: Path, closeness: np.ndarray, labels: np.ndarray, predicted: np.ndarray | None
) -> list[Path]:
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    fpr, tpr, _ = roc_curve(labels, closeness)
    fig = _figure()
    ax = fig.subplots()
    ax.plot(fpr, tpr, label=f"ROC (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    if predicted is not None:
        y = labels.astype(bool)
        op_tpr = (predicted & y).sum() / max(y.sum(), 1)
        op_fpr = (predicted & ~y).sum() / max((~y).sum(), 1)
        ax.scatter([op_fpr], [op_tpr], color="black", zorder=3, label="at the threshold")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve")
    ax.legend(fontsize=8, loc="lower right")
    paths = [_save(fig, directory / "roc.png")]

    precision, recall, _ = precision_recall_curve(labels, closeness)
    fig = _figure()
    ax = fig.subplots()
    ax.plot(recall, precision, label="precision-recall")
    ax.axhline(labels.mean(), color="grey", linestyle=":", label=f"base rate {labels.mean():.2f}")
    if predicted is not None:
        y = labels.astype(bool)
        tp = (predicted & y).sum()
        ax.scatter(
            [tp / max(y.sum(), 1)],
            [tp / max(predicted.sum(), 1)],
            color="black",
            zorder=3,
            label="at the threshold",
        )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall curve")
    ax.legend(fontsize=8, loc="lower left")
    paths.append(_save(fig, directory / "precision_recall.png"))
    return paths


def plot_reliability(path: Path, curves: Mapping[str, np.ndarray], labels: np.ndarray) -> Path:
    from textsiamese.decisions.calibration import expected_calibration_error, reliability_curve

    fig = _figure(5.5, 5.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for name, probs in curves.items():
        curve = reliability_curve(probs, labels)
        ece = expected_calibration_error(probs, labels)
        (line,) = ax.plot(curve["predicted"], curve["observed"], label=f"{name} (ECE {ece:.3f})")
        sizes = 12 + 200 * curve["count"] / max(len(labels), 1)
        ax.scatter(curve["predicted"], curve["observed"], s=sizes, color=line.get_color(), zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability of same (bin mean)")
    ax.set_ylabel("observed fraction same")
    ax.set_title("Reliability (10 equal-width bins; marker area ∝ pairs in the bin)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)


def plot_confusion(
    path: Path,
    predicted: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    label_names: tuple[str, str] = LABEL_NAMES,
) -> Path:
    y = labels.astype(bool)
    matrix = np.array(
        [[(~predicted & ~y).sum(), (predicted & ~y).sum()], [(~predicted & y).sum(), (predicted & y).sum()]]
    )
    fig = _figure(4.6, 4.0)
    ax = fig.subplots()
    ax.imshow(matrix, cmap="Blues")
    for i in range(2):
        for j in range(2):
            colour = "white" if matrix[i, j] > matrix.max() / 2 else "black"
            ax.text(j, i, f"{matrix[i, j]}", ha="center", va="center", color=colour, fontsize=13)
    ax.set_xticks([0, 1], list(label_names))
    ax.set_yticks([0, 1], list(label_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(f"Confusion matrix at threshold {threshold:.3f}")
    return _save(fig, path)


def plot_pca(path: Path, vectors: np.ndarray, groups: Sequence[Any], title: str, seed: int = 0) -> Path:
    from sklearn.decomposition import PCA

    groups_array = np.asarray([str(g) for g in groups])
    if len(vectors) > MAX_PCA_POINTS:
        keep = np.random.default_rng(seed).choice(len(vectors), MAX_PCA_POINTS, replace=False)
        vectors, groups_array = vectors[keep], groups_array[keep]
    points = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    fig = _figure(5.5, 5.0)
    ax = fig.subplots()
    colours = {
        name: colour
        for names in NAME_SETS
        for name, colour in zip(names, ("tab:red", "tab:blue"), strict=True)
    }
    for group in sorted(set(groups_array.tolist())):
        mask = groups_array == group
        ax.scatter(
            points[mask, 0],
            points[mask, 1],
            s=7,
            alpha=0.55,
            color=colours.get(group),
            label=f"{group} (n={mask.sum()})",
        )
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title)
    ax.legend(fontsize=8, markerscale=2)
    return _save(fig, path)


def _summary_lines(
    metrics: Mapping[str, Any], source: str, notes: Sequence[str], written: Sequence[Path]
) -> list[str]:
    """``summary.md``: the measures as a table, a line per plot, and the plots inline."""
    lines = [f"# Evaluation report: {metrics.get('task', '')}", ""]
    if source:
        lines += [f"Data: `{source}`", ""]
    lines += ["| measure | value |", "| --- | --- |"]
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    lines += ["", "## Plots", ""]
    for note in notes:
        lines.append(f"- {note}")
    lines.append("")
    for path in written:
        lines.append(f"![{path.stem}]({path.name})")
    return lines


def write_report(
    directory: str | Path,
    metrics: Mapping[str, Any],
    *,
    metric: str = "cosine",
    scores: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    gold_scores: np.ndarray | None = None,
    threshold: float | None = None,
    predicted: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    raw_probabilities: np.ndarray | None = None,
    pca_vectors: np.ndarray | None = None,
    pca_groups: Sequence[Any] | None = None,
    pca_title: str = "PCA of the embeddings",
    source: str = "",
    score_label: str | None = None,
    higher_is_closer: bool | None = None,
    label_names: tuple[str, str] = LABEL_NAMES,
) -> list[Path]:
    """Write the plots that the given arrays allow, and ``summary.md`` linking them; returns the paths."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    notes: list[str] = []
    score_label = score_label or f"{metric} score"
    closer = _is_similarity(metric) if higher_is_closer is None else higher_is_closer
    if scores is not None and labels is not None:
        written.append(plot_scores(out / "scores.png", scores, labels, threshold, score_label, label_names))
        notes.append(f"scores.png: score histograms by label ({' / '.join(label_names)}), with any threshold")
        closeness = scores if closer else -scores
        if len(set(labels.tolist())) == 2:
            written += plot_roc_pr(out, closeness, labels, predicted)
            notes.append("roc.png, precision_recall.png: threshold-free curves, dot = the chosen threshold")
        curves = {}
        if probabilities is not None:
            curves["calibrated"] = probabilities
        if raw_probabilities is not None:
            curves["raw score clipped to [0, 1]"] = raw_probabilities
        if curves:
            written.append(plot_reliability(out / "reliability.png", curves, labels))
            notes.append("reliability.png: observed frequency against predicted probability per bin")
        if predicted is not None and threshold is not None:
            written.append(plot_confusion(out / "confusion.png", predicted, labels, threshold, label_names))
            notes.append("confusion.png: decisions at the threshold against gold labels")
    elif scores is not None and gold_scores is not None:
        written.append(plot_sts(out / "scores.png", scores, gold_scores, metric))
        notes.append("scores.png: model score against gold similarity")
    if pca_vectors is not None and pca_groups is not None and len(pca_vectors) >= 3:
        written.append(plot_pca(out / "pca.png", pca_vectors, pca_groups, pca_title))
        notes.append(f"pca.png: {pca_title}")
    lines = _summary_lines(metrics, source, notes, written)
    with atomic_open(out / "summary.md") as handle:
        handle.write("\n".join(lines) + "\n")
    _readable(out / "summary.md")
    written.append(out / "summary.md")
    return written
