"""Coefficients of the behaviour model; written by ``bench/behaviour_eval.py --fit``.

Fitted on 1500 synthetic traces (seed 1000), 12443 windows.
"""

from __future__ import annotations

from backstop.core.models import Behaviour

CLASSES = (Behaviour.SERVING, Behaviour.TRAINING, Behaviour.OTHER)
COEFFICIENTS: tuple[tuple[float, ...], ...] = (
    (
        -2.1712,
        -1.6527,
        3.1694,
        2.3760,
        1.2996,
        5.1831,
        -0.2843,
        1.8334,
        1.2126,
        1.1769,
        1.5211,
        1.6714,
        -0.9710,
        2.5639,
        4.2951,
        0.9629,
        3.9227,
        0.1018,
        -0.3493,
        -2.4378,
    ),
    (
        0.7540,
        1.7177,
        -7.0865,
        -1.5626,
        4.3657,
        -1.6826,
        0.5068,
        -0.9033,
        -2.2222,
        -1.4486,
        -1.4407,
        -2.0496,
        1.0775,
        -2.9159,
        -1.5127,
        -0.2164,
        -1.3369,
        -0.3247,
        0.4711,
        0.5010,
    ),
    (
        1.4172,
        -0.0651,
        3.9171,
        -0.8134,
        -5.6653,
        -3.5005,
        -0.2225,
        -0.9302,
        1.0096,
        0.2717,
        -0.0804,
        0.3782,
        -0.1066,
        0.3520,
        -2.7824,
        -0.7465,
        -2.5858,
        0.2230,
        -0.1218,
        1.9368,
    ),
)
"""One row of weights per entry of ``CLASSES``, over ``behaviour.model_inputs``."""
