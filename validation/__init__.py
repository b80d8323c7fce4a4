"""Validation studies of refsuite.

Each public module of this package is one study: it defines ``NAME`` (the id used by
``refsuite report --only``), ``TITLE`` and ``run(ctx: RunContext) -> Section``. Studies are
discovered by module, so adding a study is adding a file. :func:`run_report` runs them and
renders the HTML report and ``results.json``.
"""

from ._runner import discover_studies, run_report, run_study

__all__ = ["discover_studies", "run_report", "run_study"]
