"""Accuracy measures, and the FCLS reference numbers on the real scenes."""

from __future__ import annotations

import numpy as np
import pytest

from urdm_plugin.core.io.image import read_image
from urdm_plugin.core.io.library import read_library
from urdm_plugin.core.methods.active_set import fcls
from urdm_plugin.core.metrics import (
    abundance_rmse,
    per_endmember_rmse,
    reconstruction_rmse,
    spectral_angle_deg,
    sre_db,
)


def test_metric_definitions():
    A = np.array([[0.5, 1.0], [0.5, 0.0]])
    B = np.array([[0.3, 1.0], [0.7, 0.0]])
    assert abundance_rmse(A, B) == pytest.approx(np.sqrt(0.08 / 4))
    np.testing.assert_allclose(per_endmember_rmse(A, B), [np.sqrt(0.02), np.sqrt(0.02)])
    assert sre_db(B, B) == np.inf
    assert sre_db(A, B) == pytest.approx(10 * np.log10(np.sum(B**2) / 0.08))
    assert spectral_angle_deg(np.array([1.0, 0]), np.array([0, 2.0]))[0] == pytest.approx(90)
    assert spectral_angle_deg(np.array([1.0, 1]), np.array([3.0, 3]))[0] == pytest.approx(0, abs=1e-6)
    E = np.eye(2)
    np.testing.assert_allclose(reconstruction_rmse(np.array([[1.0], [1.0]]), E, np.array([[0.0], [0.0]])), [1.0])
    # NaN pixels (nodata) are ignored
    An = A.copy()
    An[:, 1] = np.nan
    assert abundance_rmse(An, B) == pytest.approx(np.sqrt(0.08 / 2))


def _read(path):
    return read_image(path)[0].astype(np.float64)


def _csv(path):
    lib = read_library(path)
    return list(lib.names), np.column_stack([lib.wavelengths_nm, lib.spectra])


@pytest.mark.parametrize("scene,image,expected", [
    ("jasper_ridge", "jasper_ridge.tif", 0.0851),
    ("samson", "samson.img", 0.1678),
])
def test_fcls_reproduces_reference_rmse(shared_data, scene, image, expected):
    d = shared_data / scene
    Y = _read(d / image)  # Jasper: uint16 with band scale 1/5000, applied above
    names, tab = _csv(d / f"{scene}_endmembers.csv")
    E = tab[:, 1:]
    assert E.shape[0] == Y.shape[0]
    ref = _read(d / f"{scene}_gt_abundances.tif")  # band order = CSV column order
    A = fcls(Y.reshape(Y.shape[0], -1), E).reshape(ref.shape)
    assert abundance_rmse(A, ref) == pytest.approx(expected, abs=1e-3)
    # the band order matters: the best permutation is the identity
    per = per_endmember_rmse(A, ref)
    swapped = per_endmember_rmse(A[::-1], ref)
    assert per.mean() < swapped.mean()
