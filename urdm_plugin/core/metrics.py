"""Accuracy measures for unmixing results (numpy only).

Abundances ``A`` are (P × N) or (P × H × W); spectra ``Y`` (B × N) or (B × H × W);
endmembers ``E`` (B × P). Abundances are fractions (unitless); spectra in reflectance.
Non-finite entries of the estimate or reference are ignored (pixels masked as nodata).
"""

from __future__ import annotations

import numpy as np

from .errors import OptionError


def _flat(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(X.shape[0], -1) if X.ndim > 2 else X.reshape(X.shape[0], -1)


def _pair(A_est, A_ref):
    a, b = _flat(A_est), _flat(A_ref)
    if a.shape != b.shape:
        raise OptionError(f"Estimated abundances {np.shape(A_est)} and reference {np.shape(A_ref)} differ in shape",
                          "Compare maps of the same endmembers over the same pixels.")
    keep = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)  # whole pixels only
    return a[:, keep], b[:, keep]


def abundance_rmse(A_est: np.ndarray, A_ref: np.ndarray) -> float:
    """√(mean over all P × N entries of (â − a)²): the benchmark's abundance RMSE."""
    a, b = _pair(A_est, A_ref)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


def per_endmember_rmse(A_est: np.ndarray, A_ref: np.ndarray) -> np.ndarray:
    """(P,) RMSE of each abundance map over the pixels."""
    a, b = _pair(A_est, A_ref)
    return np.sqrt(np.mean((a - b) ** 2, axis=1)) if a.size else np.full(a.shape[0], np.nan)


def sre_db(A_est: np.ndarray, A_ref: np.ndarray) -> float:
    """Signal-to-reconstruction error 10·log10(‖A‖² / ‖A − Â‖²) in dB (higher is better)."""
    a, b = _pair(A_est, A_ref)
    err = float(np.sum((a - b) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(np.sum(b ** 2) / err))


def spectral_angle_deg(X: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Angle in degrees between matching columns of X and Z (B × K each, or 1-D spectra)."""
    X = np.asarray(X, np.float64)
    Z = np.asarray(Z, np.float64)
    if X.ndim == 1:
        X, Z = X[:, None], Z[:, None]
    num = np.sum(X * Z, axis=0)
    den = np.linalg.norm(X, axis=0) * np.linalg.norm(Z, axis=0)
    cos = np.clip(num / np.where(den == 0, 1.0, den), -1.0, 1.0)
    out = np.degrees(np.arccos(cos))
    return out if out.size > 1 else out.reshape(-1)


def reconstruction_rmse(Y: np.ndarray, E: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Per-pixel RMSE over bands of ``Y − EA`` (reflectance units), shape (N,) (flattened)."""
    Yf, Af = _flat(Y), _flat(A)
    E = np.asarray(E, np.float64)
    R = Yf - E @ Af
    return np.sqrt(np.mean(R * R, axis=0))
