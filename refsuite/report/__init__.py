"""Validation report model and HTML rendering (jinja2; figures embedded, opens offline)."""

from .model import Check, Comparison, Figure, Mode, RunContext, Section, Table, Tolerance
from .render import figure_from_matplotlib, render_report, results_dict

__all__ = [
    "Check",
    "Comparison",
    "Figure",
    "Mode",
    "RunContext",
    "Section",
    "Table",
    "Tolerance",
    "figure_from_matplotlib",
    "render_report",
    "results_dict",
]
