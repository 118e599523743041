"""Figures of the imitation data (each takes a table from :mod:`imitlib.study.imitation_data` and returns a Figure)."""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def length_figure(conversations: pd.DataFrame) -> Figure:
    """Distribution of conversation lengths (student tokens) per kind and family."""
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    sns.histplot(conversations, x="tokens", hue="kind", element="step", stat="density", common_norm=False, ax=left)
    left.set_title("conversation length by kind")
    left.set_xlabel("student tokens per conversation")
    sns.boxplot(conversations, x="tokens", y="family", hue="kind", ax=right)
    right.set_title("by task family")
    right.set_xlabel("student tokens per conversation")
    fig.tight_layout()
    return fig


def budget_figure(budgets: pd.DataFrame) -> Figure:
    """Tokens and conversations in each nested budget (log scales), per kind; hollow = not filled."""
    fig = Figure(figsize=(10, 3.6))
    tokens_ax, count_ax = fig.subplots(1, 2)
    for ax, column, label in ((tokens_ax, "tokens", "tokens in the subset"),
                              (count_ax, "conversations", "conversations in the subset")):
        sns.lineplot(budgets, x="budget", y=column, hue="kind", marker="o", errorbar=("pi", 100), ax=ax)
        unfilled = budgets[~budgets["filled"]]
        ax.scatter(unfilled["budget"], unfilled[column], facecolors="none", edgecolors="red", s=80, zorder=3,
                   label="not filled" if len(unfilled) else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("token budget")
        ax.set_ylabel(label)
    tokens_ax.plot(budgets["budget"], budgets["budget"], color="grey", linestyle=":", label="budget")
    tokens_ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
