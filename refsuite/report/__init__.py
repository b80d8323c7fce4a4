"""Validation report model, HTML rendering (jinja2; figures embedded, opens offline), strict
``results.json`` (merged across ``--only`` runs) and its Markdown summary ``results.md``."""

from .model import Check, Comparison, Figure, Mode, RunContext, Section, Table, Tolerance
from .render import figure_from_matplotlib, render_report, results_dict
from .results import dumps_results, load_results, merge_results
from .markdown import write_results_markdown

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
    "dumps_results",
    "load_results",
    "merge_results",
    "write_results_markdown",
]
