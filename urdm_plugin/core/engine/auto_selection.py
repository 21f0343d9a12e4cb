"""Automatic endmember selection on a plan's pixel sample, checked for stability: a
spectrum the scene really holds is chosen whichever pixels are looked at."""

from __future__ import annotations

import numpy as np

from ..errors import InputImageError
from .findings import Kind, warning

#: Extra random pixel subsets the stability check selects from (when the sample holds more
#: pixels than one selection regresses, core.methods.selection.N_SAMPLE).
STABILITY_REPEATS = 2


def _unstable(Y, plan, limit: int, idx: list, noise_variance, note) -> list:
    """Flags for selected spectra that other random pixel subsets of the sample do not keep:
    a spectrum the scene really holds is chosen whichever pixels are looked at. The sample's
    noise level is the first selection's (the same pixels: not estimated again)."""
    from ..methods.selection import select_endmembers

    kept = {i: 1 for i in idx}
    for k in range(1, STABILITY_REPEATS + 1):
        other = select_endmembers(Y, plan.E, names=plan.names, max_endmembers=limit, seed=plan.options.seed + k,
                                  noise_variance=noise_variance,
                                  progress=lambda f, m, k=k: note(0.65 + 0.05 * (k - 1 + f) / STABILITY_REPEATS,
                                                                  f"checking the selection on another pixel sample "
                                                                  f"({k} of {STABILITY_REPEATS})"))
        for i in set(int(j) for j in np.asarray(other).ravel()) & set(kept):
            kept[i] += 1
    n = STABILITY_REPEATS + 1
    return [f"{plan.names[i]}: kept in {kept[i]} of {n} random pixel samples (unstable)"
            for i in idx if kept[i] < n]


def select_automatically(plan, limit: int, note, subset: bool) -> None:
    """Keep the at most ``limit`` spectra of ``plan.E`` that explain ``plan.sample``
    (:func:`core.methods.selection.select_endmembers`), flag the unstable ones, and record the
    choice in ``plan`` (:class:`core.engine.plan.RunPlan`: ``E``, ``names``, ``selection``,
    a warning naming them); ``subset``: the spectra were given (ticked), not the whole library."""
    from ..io.manifest import jsonable
    from ..methods.selection import N_SAMPLE, select_endmembers

    if plan.sample.shape[1] < max(limit, 2):
        raise InputImageError("Too few valid pixels to select endmembers automatically",
                              "Name the endmembers to use, or check the image's nodata")
    # the stage's progress also polls the run's cancel (the pipeline's _Progress does)
    Y = plan.sample.astype(np.float64)
    res = select_endmembers(Y, plan.E, names=plan.names, max_endmembers=limit, seed=plan.options.seed,
                            progress=lambda f, m: note(0.6 + 0.05 * f, m))
    idx = [int(i) for i in np.asarray(res).ravel()]
    report = {k: jsonable(v) for k, v in res.as_dict().items()}
    sigma2 = None if res.noise_sigma is None else res.noise_sigma ** 2
    unstable = _unstable(Y, plan, limit, idx, sigma2, note) if Y.shape[1] > N_SAMPLE else []
    if unstable:
        report["flags"] = list(report.get("flags") or []) + unstable
    plan.E = plan.E[:, idx]
    plan.names = [plan.names[i] for i in idx]
    plan.selection = {**report, "mode": "automatic", "from": len(plan.matched.names), "max": limit,
                      "names": plan.names, "subset": subset}
    held = f"{len(plan.matched.names)} spectra were given" if subset else \
        f"Library holds {len(plan.matched.names)} spectra"
    msg = (f"{held}, more than the {limit} the run can use; selected {len(plan.names)} of them "
           f"automatically: {', '.join(plan.names)}")
    plan.warnings.append(warning(msg, Kind.ENDMEMBERS))
    note(0.7, msg)
