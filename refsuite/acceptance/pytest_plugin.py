"""pytest plugin: ``pytest --acceptance PLAN.toml`` turns every check of the plan into one test.

Registered through the ``pytest11`` entry point of the refsuite distribution, so it is active
wherever refsuite is installed and does nothing unless ``--acceptance`` is given. With it,
pytest collects only the plan (items ``PLAN.toml::geometry``, ``::efficiency``, ...), runs
the acceptance once (:func:`refsuite.acceptance.run_acceptance`) and reports each check as
a test, so ``-k``, ``--junitxml`` and a site's CI work as for any test suite. A failing
test's message names what failed where (blocks, crystal voxels, channels, offsets).

Options: ``--acceptance PLAN``, ``--acceptance-baseline FILE`` (results.json of the last
accepted state), ``--acceptance-out DIR`` (default: a new temporary folder, printed at the end),
``--acceptance-device``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

_RUN = pytest.StashKey()


def pytest_addoption(parser):
    g = parser.getgroup("refsuite acceptance")
    g.addoption("--acceptance", metavar="PLAN", default=None,
                help="run the checks of this refsuite acceptance plan (.toml) as tests")
    g.addoption("--acceptance-baseline", metavar="FILE", default=None,
                help="results.json of the last accepted state (refsuite acceptance)")
    g.addoption("--acceptance-out", metavar="DIR", default=None,
                help="output folder of the acceptance report (default: a temporary folder)")
    g.addoption("--acceptance-device", metavar="DEVICE", default=None, help="torch device of the alignment")


def pytest_configure(config):
    plan = config.getoption("acceptance")
    if not plan:
        return
    from refsuite.acceptance.plan import PlanError, load_plan
    from refsuite.acceptance.runner import BaselineError, load_baseline

    try:
        config.stash[_RUN] = {"plan": load_plan(plan)}
        if config.getoption("acceptance_baseline"):
            load_baseline(config.getoption("acceptance_baseline"))
    except (PlanError, BaselineError) as exc:
        raise pytest.UsageError(str(exc)) from None
    # collect the plan only (not the test paths of the project pytest runs in)
    config.args[:] = [str(Path(plan).resolve())]


def pytest_collect_file(file_path, parent):
    state = parent.config.stash.get(_RUN, None)
    if state is not None and Path(file_path).resolve() == Path(parent.config.getoption("acceptance")).resolve():
        return AcceptancePlanFile.from_parent(parent, path=file_path)
    return None


def _run(config):
    state = config.stash[_RUN]
    if "run" not in state:
        from refsuite.acceptance.runner import run_acceptance

        out = config.getoption("acceptance_out") or tempfile.mkdtemp(prefix="refsuite-acceptance-")
        state["run"] = run_acceptance(state["plan"], out_dir=out, baseline=config.getoption("acceptance_baseline"),
                                      device=config.getoption("acceptance_device"), progress=False)
    return state["run"]


class AcceptancePlanFile(pytest.File):
    """The plan file: one item per enabled check, in the plan's order."""

    def collect(self):
        for name in self.config.stash[_RUN]["plan"].enabled_checks():
            yield AcceptanceCheckItem.from_parent(self, name=name)


class AcceptanceCheckFailed(Exception):
    """A check of the plan failed (carries its :class:`CheckResult`)."""


class AcceptanceCheckItem(pytest.Item):
    """One acceptance check as a test."""

    def runtest(self):
        result = _run(self.config).result(self.name)
        self.user_properties.append(("summary", result.summary()))
        for c in result.criteria:
            self.user_properties.append((c.name, f"{c.measured:.6g} {c.unit} (tolerance {c.tolerance})"))
        if not result.passed:
            raise AcceptanceCheckFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, AcceptanceCheckFailed):
            r = excinfo.value.args[0]
            lines = [r.summary()]
            lines += [f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.measured:.6g} {c.unit} "
                      f"(tolerance {c.tolerance}) {c.detail}" for c in r.criteria]
            lines += [f"  offending: {o}" for o in r.offenders[:20]]
            return "\n".join(lines)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"acceptance check {self.name}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    state = config.stash.get(_RUN, None)
    if state is not None and "run" in state:
        run = state["run"]
        terminalreporter.write_line(f"refsuite acceptance: {'ACCEPTED' if run.passed else 'NOT ACCEPTED'}; "
                                    f"report {run.files.get('html')}")
