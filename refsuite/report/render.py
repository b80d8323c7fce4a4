"""Render sections into self-contained HTML pages and a ``results.json``.

Every page embeds its figures (base64 PNG) and its style, so a report opens offline and
can be mailed as single files. All files are written atomically.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import math
from pathlib import Path
from typing import Any, Sequence

import jinja2

from ..io.atomic import atomic_write_text
from .model import Figure, RunContext, Section

__all__ = ["render_report", "figure_from_matplotlib", "results_dict"]


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
    return env


def figure_from_matplotlib(fig, title: str, caption: str = "", *, dpi: int = 110) -> Figure:
    """Turn a matplotlib figure into an embeddable :class:`Figure` and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Figure(title=title, png=buf.getvalue(), caption=caption)


def results_dict(sections: Sequence[Section], ctx: RunContext, runtime_s: float) -> dict[str, Any]:
    """The machine-readable summary written to ``results.json``."""
    checks = [c.as_dict() for s in sections for c in s.checks]
    from .. import __version__

    return {
        "refsuite_version": __version__,
        "mode": ctx.mode.value,
        "seed": ctx.seed,
        "device": ctx.device,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "runtime_s": runtime_s,
        "passed": bool(checks) and all(c["passed"] for c in checks),
        "n_checks": len(checks),
        "n_passed": sum(c["passed"] for c in checks),
        "studies": {
            s.study: {
                "title": s.title,
                "passed": s.passed,
                "runtime_s": s.runtime_s,
                "n_checks": len(s.checks),
                "tables": [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in s.tables],
            }
            for s in sections
        },
        "checks": checks,
    }


def render_report(sections: Sequence[Section], out_dir: str | Path, ctx: RunContext, runtime_s: float) -> dict:
    """Write ``index.html``, one ``<study>.html`` per section and ``results.json`` into ``out_dir``.

    Returns the results dictionary that was written to ``results.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = results_dict(sections, ctx, runtime_s)
    meta = dict(results)
    meta["version"] = results["refsuite_version"]
    env = _environment()
    study_tpl = env.get_template("study.html")
    for s in sections:
        html = study_tpl.render(title=s.title, s=s, meta=meta)
        atomic_write_text(out / f"{s.study}.html", html)
    index = env.get_template("index.html").render(title="refsuite validation report", sections=sections, meta=meta)
    atomic_write_text(out / "index.html", index)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=_json_default))
    return results


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
