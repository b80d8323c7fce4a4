"""The scanner named in a configuration file: one pydantic model for scenarios and acceptance plans.

In TOML (a scenario of :mod:`simulations.scenario`, an acceptance plan of
:mod:`refsuite.acceptance.plan`)::

    [scanner]
    preset = "thull_sim"                 # a scanner from the papers (refsuite.geometry.PRESETS) ...
    options = { binning = "4mm" }        # ... with its keyword options
    # or
    file = "blueprint.json"              # a scanner .json with explicit poses (Scanner.save),
                                         # relative to the configuration file's folder

Exactly one of ``preset`` and ``file``; ``options`` only with ``preset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .presets import PRESETS

__all__ = ["ScannerSpec"]


class ScannerSpec(BaseModel):
    """``preset`` (+ ``options``) or ``file`` (a scanner .json, explicit poses), exactly one."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    preset: Optional[Literal[tuple(PRESETS)]] = None  # type: ignore[valid-type]
    options: dict = Field(default_factory=dict)
    file: Optional[str] = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.preset is None) == (self.file is None):
            raise ValueError("scanner needs exactly one of 'preset' or 'file'")
        if self.file is not None and self.options:
            raise ValueError("scanner 'options' apply to presets only")
        return self

    def path(self, base_dir=None) -> Optional[Path]:
        """The scanner file, relative paths taken from ``base_dir``; None for a preset."""
        if self.file is None:
            return None
        p = Path(self.file)
        return p if p.is_absolute() or base_dir is None else Path(base_dir) / p

    def build(self, base_dir=None):
        """The :class:`~refsuite.geometry.Scanner` it names (ValueError / OSError on a bad preset option or file)."""
        from .presets import preset
        from .scanner import Scanner

        if self.preset is not None:
            return preset(self.preset, **self.options)
        return Scanner.load(self.path(base_dir))
