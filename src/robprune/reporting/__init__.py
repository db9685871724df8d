"""Reporting: Markdown tables and PNG figures of results."""

from .markdown import eps_label, grid_markdown, pct, plot_grid, sweep_markdown, table2_markdown, with_ci

__all__ = ["eps_label", "grid_markdown", "pct", "plot_grid", "sweep_markdown", "table2_markdown", "with_ci"]
