"""Explicit and implicit GBDT timing corrections (XGBoost), their application and persistence.

Residual physics (Naunheim et al. 2025, sec. 3.1): after the analytic skew calibration the
remaining deviation from the expected time difference is learned by gradient-boosted
decision trees (sec. 3.3; XGBoost, Chen and Guestrin 2016, ``tree_method="hist"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refsuite._checks import check_in_range, check_positive
from refsuite.io.atomic import atomic_path

from .features import (
    CorrectionKind,
    energy_mask,
    expected_dt,
    explicit_label,
    extract_features,
    feature_names,
    time_difference,
    validate_events,
)

__all__ = [
    "CorrectionModel",
    "train_correction",
    "predict_correction",
    "apply_correction",
    "save_model",
    "load_model",
    "resolve_device",
]

_META_KEY = "refsuite_timing"
_FORMAT_VERSION = 1


def _xgb():
    try:
        import xgboost
    except ImportError as exc:  # record the capability; fail only when a model is needed
        raise ImportError("refsuite.timing corrections need xgboost (pip install 'xgboost>=2.0')") from exc
    return xgboost


def resolve_device(device: str | None) -> str:
    """``"cuda"`` when requested or (for ``None``) when torch sees a GPU and xgboost has CUDA, else ``"cpu"``."""
    if device is not None:
        if not (device == "cpu" or device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        return device
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    return "cuda" if has_gpu and _xgb().build_info().get("USE_CUDA", False) else "cpu"


@dataclass
class CorrectionModel:
    """A trained timing correction: the booster plus everything needed to apply it.

    Attributes
    ----------
    kind : CorrectionKind
        Explicit (predicts a per-timestamp correction, ps) or implicit (predicts the
        corrected time difference, ps).
    booster : xgboost.Booster
    offsets_ps : ndarray, shape (2, C)
        The analytic skew calibration the features were computed with (ps).
    feature_names : list of str
    params : dict
        XGBoost parameters and training settings.
    history : dict
        Training and validation MAE (ps) per boosting round.
    """

    kind: CorrectionKind
    booster: object
    offsets_ps: np.ndarray
    feature_names: list[str]
    params: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)

    @property
    def n_trees(self) -> int:
        return int(self.booster.num_boosted_rounds())


def train_correction(
    events,
    *,
    kind="explicit",
    max_depth: int = 8,
    offsets_ps=None,
    n_estimators: int = 400,
    learning_rate: float = 0.1,
    validation_fraction: float = 0.2,
    early_stopping_rounds: int = 20,
    energy_window_kev=None,
    subsample: float = 1.0,
    max_bin: int = 256,
    seed: int = 0,
    device: str | None = None,
    n_jobs: int | None = None,
    executor=None,
    distributed_min_rows: int = 1_000_000,
) -> CorrectionModel:
    """Train an explicit or implicit GBDT correction on labelled coincidences.

    Parameters
    ----------
    events : dict
        Calibration coincidences with known source positions (``time_ps``, ``energy_au``,
        ``source_mm``).
    kind : {"explicit", "implicit"} or CorrectionKind
        Residual definition (Naunheim et al. 2025, eqs. 4-7): explicit label
        ``(dt - 2 z / c) / 2`` from features without ``dt``; implicit label ``2 z / c`` from
        features with ``dt``.
    max_depth : int
        Maximum tree depth (the paper sweeps 4 ... 20).
    offsets_ps : array_like (2, C), optional
        Analytic skew calibration; computed from ``events`` with
        :func:`~refsuite.timing.skew.skew_calibration` when omitted.
    n_estimators, learning_rate, subsample, max_bin
        XGBoost boosting rounds, shrinkage, row subsampling and histogram bins per feature.
    validation_fraction : float
        Share of the events held out for early stopping (0 disables it).
    early_stopping_rounds : int
        Stop when the validation MAE has not improved for this many rounds.
    energy_window_kev : (float, float), optional
        Train only on events with both cluster energies in this window (keV); all by default
        (the paper evaluates the MAE without energy restriction).
    seed : int
        Seed of the split and of XGBoost.
    device : str, optional
        ``"cpu"`` or ``"cuda"``; default CUDA when available.
    n_jobs : int, optional
        CPU threads (default: all; per worker with a cluster).
    executor : refsuite.execution.Executor, optional
        A local or running Dask cluster. When the training set has at least
        ``distributed_min_rows`` rows, the model is trained with ``xgboost.dask`` (XGBoost's own
        distributed training): the rows are split into one partition per worker, each worker
        builds the gradient histograms of its partition and XGBoost's collective sums them, so
        one model uses the memory and cores of all workers. Such a model is not bitwise the
        single-process one (the histogram cuts are sketched per partition) but equally accurate.
        Default (or an in-process executor, or fewer rows): one process.
    distributed_min_rows : int
        Rows from which a cluster ``executor`` trains with ``xgboost.dask``.

    Returns
    -------
    CorrectionModel
    """
    kind = CorrectionKind.parse(kind)
    if not isinstance(max_depth, (int, np.integer)) or not 1 <= max_depth <= 30:
        raise ValueError(f"max_depth must be an integer in [1, 30], got {max_depth!r}")
    if not isinstance(n_estimators, (int, np.integer)) or n_estimators < 1:
        raise ValueError(f"n_estimators must be an integer >= 1, got {n_estimators!r}")
    check_positive("learning_rate", learning_rate)
    check_in_range("validation_fraction", validation_fraction, 0.0, 0.9)
    check_in_range("subsample", subsample, 0.0, 1.0, low_inclusive=False)
    if isinstance(distributed_min_rows, bool) or not isinstance(distributed_min_rows, (int, np.integer)) \
            or distributed_min_rows < 1:
        raise ValueError(f"distributed_min_rows must be an integer >= 1, got {distributed_min_rows!r}")
    device = resolve_device(device)
    n = validate_events(events)
    if offsets_ps is None:
        from .skew import skew_calibration

        offsets_ps = skew_calibration(events)
    offsets_ps = np.asarray(offsets_ps, dtype=np.float64)
    keep = energy_mask(events, energy_window_kev)
    if keep.sum() < 10:
        raise ValueError(f"energy_window_kev={energy_window_kev!r} leaves {keep.sum()} of {n} events; need >= 10")
    idx = np.flatnonzero(keep)
    x = extract_features(events, offsets_ps, kind)[idx]
    y = _label(events, offsets_ps, kind)[idx]
    _xgb()  # refuse early when xgboost is missing
    rng = np.random.default_rng([seed, 0x7B])
    n_val = int(round(validation_fraction * len(idx)))
    perm = rng.permutation(len(idx))
    val, tr = perm[:n_val], perm[n_val:]
    names = feature_names(np.shape(events["time_ps"])[-1], kind)
    if not isinstance(max_bin, (int, np.integer)) or max_bin < 2:
        raise ValueError(f"max_bin must be an integer >= 2, got {max_bin!r}")
    params = {
        "objective": "reg:squarederror",
        "eval_metric": "mae",
        "tree_method": "hist",
        "device": device,
        "max_depth": int(max_depth),
        "eta": float(learning_rate),
        "subsample": float(subsample),
        "max_bin": int(max_bin),
        "seed": int(seed),
    }
    if n_jobs is not None:
        params["nthread"] = int(n_jobs)
    client = getattr(executor, "client", None)
    boost = _boost_dask if client is not None and len(tr) >= distributed_min_rows else _boost_here
    booster, history = boost(params, (x[tr], y[tr]), (x[val], y[val]) if n_val > 0 else None, names=names,
                             n_rounds=int(n_estimators), early_stopping_rounds=int(early_stopping_rounds),
                             client=client)
    if n_val > 0 and booster.best_iteration + 1 < booster.num_boosted_rounds():
        booster = booster[: booster.best_iteration + 1]
    settings = {**params, "n_estimators": int(n_estimators), "validation_fraction": float(validation_fraction),
                "early_stopping_rounds": int(early_stopping_rounds),
                "energy_window_kev": None if energy_window_kev is None else list(energy_window_kev),
                "n_train": int(len(tr)), "n_validation": int(n_val), "distributed": boost is _boost_dask}
    hist = {f"{k}_mae_ps": list(map(float, v["mae"])) for k, v in history.items()}
    return CorrectionModel(kind=kind, booster=booster, offsets_ps=offsets_ps, feature_names=names,
                           params=settings, history=hist)


def _boost_here(params, train, val, *, names, n_rounds, early_stopping_rounds, client=None):
    """(booster, evals history) of ``xgboost.train`` in this process (``val`` None: no early stopping)."""
    xgb = _xgb()
    dtrain = xgb.QuantileDMatrix(*train, feature_names=names, max_bin=params["max_bin"])
    evals, kwargs, history = [(dtrain, "train")], {}, {}
    if val is not None:
        evals.append((xgb.QuantileDMatrix(*val, feature_names=names, ref=dtrain, max_bin=params["max_bin"]),
                      "validation"))
        kwargs["early_stopping_rounds"] = early_stopping_rounds
    booster = xgb.train(params, dtrain, num_boost_round=n_rounds, evals=evals, evals_result=history,
                        verbose_eval=False, **kwargs)
    return booster, history


def _boost_dask(params, train, val, *, names, n_rounds, early_stopping_rounds, client):
    """(booster, evals history) of ``xgboost.dask.train`` over the workers of ``client``.

    The rows are cut into one partition per worker (``dask.array`` chunks) and scattered;
    XGBoost's Dask interface builds a quantile matrix on each worker and trains one booster.
    """
    import dask.array as da
    from xgboost import dask as dxgb

    n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))

    def matrix(x, y, ref=None):
        rows = -(-len(x) // n_workers)
        return dxgb.DaskQuantileDMatrix(client, da.from_array(x, chunks=(rows, -1)), da.from_array(y, chunks=rows),
                                        feature_names=names, max_bin=params["max_bin"], ref=ref)

    with client.as_current():  # xgboost.dask also looks up the current client itself
        dtrain = matrix(*train)
        evals, kwargs = [(dtrain, "train")], {}
        if val is not None:
            evals.append((matrix(*val, ref=dtrain), "validation"))
            kwargs["early_stopping_rounds"] = early_stopping_rounds
        out = dxgb.train(client, params, dtrain, num_boost_round=n_rounds, evals=evals, verbose_eval=False,
                         **kwargs)
    return out["booster"], out["history"]


def _label(events, offsets_ps, kind: CorrectionKind) -> np.ndarray:
    if kind is CorrectionKind.EXPLICIT:
        return explicit_label(events, offsets_ps)
    return expected_dt(events)


def predict_correction(model: CorrectionModel, events, *, device: str | None = None) -> np.ndarray:
    """Raw model output (n,) (ps): the timestamp correction (explicit) or the time difference (implicit)."""
    if not isinstance(model, CorrectionModel):
        raise TypeError(f"model must be a CorrectionModel, got {type(model).__name__}")
    validate_events(events)
    n_ch = np.shape(events["time_ps"])[-1]
    if model.offsets_ps.shape != (2, n_ch):
        raise ValueError(f"events have {n_ch} channels per detector but the model was trained with "
                         f"{model.offsets_ps.shape[1]}")
    x = extract_features(events, model.offsets_ps, model.kind)
    model.booster.set_param({"device": resolve_device(device)})
    return model.booster.inplace_predict(x).astype(np.float64)


def apply_correction(model: CorrectionModel, events, *, device: str | None = None) -> np.ndarray:
    """Corrected time difference ``t_A - t_B`` (n,) (ps).

    Explicit: ``dt - 2 c`` with ``c`` the predicted per-timestamp correction (``t_A - c``,
    ``t_B + c``; Naunheim et al. 2025, eq. 7). Implicit: the predicted time difference.
    """
    pred = predict_correction(model, events, device=device)
    if model.kind is CorrectionKind.EXPLICIT:
        return time_difference(events, model.offsets_ps) - 2.0 * pred
    return pred


def save_model(model: CorrectionModel, path) -> Path:
    """Write ``model`` to ``path`` (``.json`` or ``.ubj``, XGBoost's formats) atomically.

    The calibration offsets, kind, feature names and settings are stored as a booster
    attribute, so one file restores the whole correction.
    """
    path = Path(path)
    if path.suffix not in (".json", ".ubj"):
        raise ValueError(f"path must end in .json or .ubj, got {str(path)!r}")
    meta = {"format_version": _FORMAT_VERSION, "kind": model.kind.value,
            "offsets_ps": model.offsets_ps.tolist(), "feature_names": model.feature_names,
            "params": model.params, "history": model.history}
    booster = model.booster.copy()
    booster.set_attr(**{_META_KEY: json.dumps(meta)})
    with atomic_path(path) as tmp:
        booster.save_model(str(tmp))
    return path


def load_model(path) -> CorrectionModel:
    """Read a model written by :func:`save_model`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {str(path)!r}")
    booster = _xgb().Booster()
    booster.load_model(str(path))
    raw = booster.attr(_META_KEY)
    if raw is None:
        raise ValueError(f"{str(path)!r} is an XGBoost model without refsuite timing metadata")
    meta = json.loads(raw)
    if meta.get("format_version") != _FORMAT_VERSION:
        raise ValueError(f"{str(path)!r}: unsupported format_version {meta.get('format_version')!r}")
    return CorrectionModel(kind=CorrectionKind(meta["kind"]), booster=booster,
                           offsets_ps=np.asarray(meta["offsets_ps"], dtype=np.float64),
                           feature_names=list(meta["feature_names"]), params=meta["params"],
                           history=meta.get("history", {}))
