"""Render sections into self-contained HTML pages and a ``results.json``.

Every page embeds its figures (base64 PNG) and its style, so a report opens offline and
can be mailed as single files. All files are written atomically. The index opens with the
failed checks (study, check, measured value, tolerance; each links to its row), then a table
of studies and every check. Texts written as docstrings (summaries, justifications, notes) are
rendered from their reST markup (:mod:`refsuite.report.text`); measured and reference values
carry the unit of their tolerance; a check judged only in another plan reads "shown, judged
in <plan>" and counts neither as passed nor as failed.
"""

from __future__ import annotations

import base64
import contextlib
import io
import math
from pathlib import Path
from typing import Any, Collection, Sequence

import jinja2

from ..io.atomic import atomic_write_text
from .model import Figure, RunContext, Section
from .results import anchor, dumps_results, merge_results, results_dict, verdict_text
from .text import rst_to_html

__all__ = ["render_report", "figure_from_matplotlib", "results_dict"]

#: tables with more rows than this go after the figures (a figure should not hide below 60 rows)
LONG_TABLE_ROWS = 12


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e6):
            return f"{value:.4e}"
        return f"{value:.6g}"
    return str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("refsuite.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters["fmt"] = _fmt
    env.filters["b64"] = lambda b: base64.b64encode(b).decode("ascii")
    env.filters["rst"] = rst_to_html
    return env


def figure_from_matplotlib(fig, title: str, caption: str = "", *, dpi: int = 110) -> Figure:
    """Turn a matplotlib figure into an embeddable :class:`Figure` and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Figure(title=title, png=buf.getvalue(), caption=caption)


def value_text(value: Any, unit: str = "", reason: str | None = None) -> str:
    """A measured/reference cell: the number and its unit, or why there is no number."""
    if value is None:
        return reason.replace("not a finite number: ", "") if reason else "—"
    text = _fmt(value)
    return f"{text} {unit}" if unit else text


def _check_views(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks of ``results`` with what the templates need: anchors and display cells."""
    views = []
    for c in results["checks"]:
        v = dict(c)
        v["anchor"] = anchor(c["name"])
        v["measured_text"] = value_text(c["measured"], c.get("unit", ""), c.get("measured_reason"))
        v["reference_text"] = value_text(c["reference"], c.get("unit", ""), c.get("reference_reason"))
        v["verdict"] = verdict_text(c)
        views.append(v)
    return views


def _long(table) -> bool:
    return len(table.rows) > LONG_TABLE_ROWS


def render_report(
    sections: Sequence[Section],
    out_dir: str | Path,
    ctx: RunContext,
    runtime_s: float,
    *,
    previous: dict[str, Any] | None = None,
    keep: Collection[str] = (),
) -> dict:
    """Write ``index.html``, one ``<study>.html`` per section and ``results.json`` into ``out_dir``.

    ``previous``: the results of an earlier report in ``out_dir`` (see
    :func:`~refsuite.report.results.load_results`); its studies named in ``keep`` that are not in
    ``sections`` are kept (their pages stay as written) and the index lists them too. Pages of
    studies of ``previous`` that end up in neither are removed, so no page outlives its entry.
    Returns the results dictionary that was written to ``results.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results_dict(sections, ctx, runtime_s)
    if previous is not None:
        results = merge_results(previous, results, keep=keep)
    env = _environment()
    views = _check_views(results)
    study_tpl = env.get_template("study.html")
    for s in sections:
        own = [v for v in views if v["study"] == s.study]
        short = [t for t in s.tables if not _long(t)]
        long_ = [t for t in s.tables if _long(t)]
        html = study_tpl.render(title=s.title, s=s, checks=own, study=results["studies"][s.study],
                                short_tables=short, long_tables=long_)
        atomic_write_text(out / f"{s.study}.html", html)
    failed = [v for v in views if v["status"] == "fail"]
    index = env.get_template("index.html").render(title="refsuite validation report", results=results,
                                                  checks=views, failed=failed)
    atomic_write_text(out / "index.html", index)
    atomic_write_text(out / "results.json", dumps_results(results))
    for name in (previous or {}).get("studies", {}):
        if name not in results["studies"]:
            with contextlib.suppress(FileNotFoundError):
                (out / f"{name}.html").unlink()
    return results


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
