"""A few-label learner: a Gaussian process on the frozen network's embeddings, for the residual.

Out of distribution an ensemble's spread does not point at its errors, and fine-tuning the
networks on a few dozen labels barely moves them. :class:`ResidualGP` leaves the networks
frozen and learns what they get wrong: an exact GP (squared-exponential kernel plus noise,
hyperparameters by maximum marginal likelihood) on the per-structure embedding of the
ensemble (:meth:`~anisoscreen.model.nn.network.AnisoNet.forward_with_embedding`), predicting
the residual ``log y - log y_model`` of a positive objective (a_r, eps_poly). Its posterior
standard deviation grows away from the labels, so sigma is large where data are new.

Sigma is recalibrated on the labels revealed so far (:func:`loo_scale`): the leave-one-out
z-scores of the labels give the factor that makes their RMS one. :func:`coverage` reports the
share of labels inside ``mean +- 2 sigma``: evaluated on each round's picks before their
labels are revealed, it is the per-round calibration a campaign reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

__all__ = [
    "EmbeddingSpace",
    "Posterior",
    "ResidualGP",
    "coverage",
    "loo_scale",
    "posterior_samples",
]


@dataclass
class EmbeddingSpace:
    """The pool's embeddings standardised and projected on their leading principal axes.

    Fitted on the unlabelled pool (no labels are used), so every candidate and every label
    live in one fixed coordinate system; distances in it drive the GP kernel and the batch
    diversity (:class:`~anisoscreen.campaign.acquisition.EmbeddingDiversity`).

    Parameters
    ----------
    components
        Principal axes kept (fewer if the pool has fewer).
    """

    components: int = 16
    mean_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scale_: np.ndarray = field(default_factory=lambda: np.zeros(0))
    axes_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def fit(self, features: np.ndarray, min_scale: np.ndarray | None = None) -> EmbeddingSpace:
        """Fit on ``features`` (n, d): member-mean embeddings, plus any extra columns.

        ``min_scale`` (d,): the least scale a column is standardised by, so that a column
        nearly constant over the pool (a few outliers) does not swamp the others.
        """
        features = np.asarray(features, dtype=float)
        self.mean_ = features.mean(axis=0)
        self.scale_ = features.std(axis=0) + 1e-8
        if min_scale is not None:
            self.scale_ = np.maximum(self.scale_, np.asarray(min_scale, dtype=float))
        z = (features - self.mean_) / self.scale_
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        self.axes_ = vt[: min(self.components, len(vt))].T
        return self

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Coordinates (n, components), scaled so the pool has unit mean squared norm."""
        z = (np.asarray(features, dtype=float) - self.mean_) / self.scale_
        return z @ self.axes_ / np.sqrt(len(self.scale_))


@dataclass
class Posterior:
    """Predictive mean and standard deviation of ``log y`` for every candidate."""

    mean: np.ndarray
    sigma: np.ndarray


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


@dataclass
class ResidualGP:
    """Exact GP regression of residuals on embedding coordinates.

    Kernel ``amplitude^2 exp(-|x - x'|^2 / (2 length^2)) + noise^2 delta``. The three
    hyperparameters maximise the log marginal likelihood (L-BFGS from a few starts, bounded).
    The prior mean is zero (far from every label the network's own prediction stands): the
    labels a campaign picks are its best-ranked candidates, so their mean residual is biased
    and would shift the whole pool.

    Parameters
    ----------
    prior_count
        With ``fit_offset``: pseudo-labels of zero residual the constant mean is shrunk with.
    fit_offset
        Use the labels' (shrunk) mean residual as a constant prior mean instead of zero.
    min_noise
        Lower bound of the noise standard deviation (log units).
    max_length
        Upper bound of the length scale, in units of the pool's RMS radius (the coordinates
        of :class:`EmbeddingSpace`). A correction learnt from a few labels stays local: with
        a longer one the marginal likelihood of a campaign's first picks (its best-ranked
        candidates, which share one bias) favours an offset of the whole pool, and the MAE on
        the unlabelled pool jumped after the first round (``docs/guide/campaigns.md``).
    """

    prior_count: float = 2.0
    fit_offset: bool = False
    min_noise: float = 0.02
    max_length: float = 0.3
    x_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    offset_: float = 0.0
    length_: float = 1.0
    amplitude_: float = 0.3
    noise_: float = 0.1
    chol_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    alpha_: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def _kernel(self, a: np.ndarray, b: np.ndarray, length: float, amplitude: float) -> np.ndarray:
        return amplitude**2 * np.exp(-0.5 * _sq_distances(a, b) / length**2)

    def _nll(self, log_params: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        length, amplitude, noise = np.exp(log_params)
        k = self._kernel(x, x, length, amplitude) + (noise**2 + 1e-9) * np.eye(len(x))
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return 1e10
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
        return float(0.5 * y @ alpha + np.log(np.diag(chol)).sum())

    def fit(self, x: np.ndarray, residuals: np.ndarray) -> ResidualGP:
        """Fit to coordinates ``x`` (n, d) and residuals (n,) of the labelled candidates."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(residuals, dtype=float)
        self.x_ = x
        self.offset_ = float(y.sum() / (len(y) + self.prior_count)) if self.fit_offset else 0.0
        centred = y - self.offset_
        spread = max(float(np.sqrt(np.mean(centred**2))), 0.05)
        # a few labels cannot pin the hyperparameters: the amplitude stays within twice the
        # labels' RMS residual and the length between a fifth of the pool's RMS radius (1)
        # and max_length
        bounds = [
            (np.log(min(0.2, self.max_length)), np.log(self.max_length)),
            (np.log(0.02), np.log(2.0 * spread)),
            (np.log(self.min_noise), np.log(2.0 * spread)),
        ]
        best = None
        if len(y) >= 3:
            lower, upper = np.array(bounds).T
            shortest, longest = np.exp(bounds[0])  # starts at both ends of the length's range
            for start in (
                (shortest, spread, spread / 2),
                (np.sqrt(shortest * longest), spread, spread / 4),
                (longest, spread, spread),
            ):
                result = minimize(
                    self._nll,
                    np.clip(np.log(start), lower, upper),
                    args=(x, centred),
                    method="L-BFGS-B",
                    bounds=bounds,
                )
                if best is None or result.fun < best.fun:
                    best = result
        if best is not None:
            self.length_, self.amplitude_, self.noise_ = (float(v) for v in np.exp(best.x))
        else:  # too few labels to fit: a broad prior around their mean
            self.length_, self.amplitude_, self.noise_ = self.max_length, spread, spread / 2
        k = self._kernel(x, x, self.length_, self.amplitude_)
        k += (self.noise_**2 + 1e-9) * np.eye(len(x))
        self.chol_ = np.linalg.cholesky(k)
        self.alpha_ = np.linalg.solve(self.chol_.T, np.linalg.solve(self.chol_, centred))
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean residual and predictive standard deviation (noise included) at ``x``."""
        x = np.asarray(x, dtype=float)
        k_star = self._kernel(x, self.x_, self.length_, self.amplitude_)
        mean = self.offset_ + k_star @ self.alpha_
        v = np.linalg.solve(self.chol_, k_star.T)
        var = self.amplitude_**2 - (v * v).sum(axis=0) + self.noise_**2
        return mean, np.sqrt(np.maximum(var, 1e-12))

    def loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave-one-out mean residuals and standard deviations of the labels (closed form)."""
        inverse = np.linalg.solve(self.chol_.T, np.linalg.solve(self.chol_, np.eye(len(self.x_))))
        diag = np.diag(inverse)
        centred_y = self.chol_ @ (self.chol_.T @ self.alpha_)
        mean = self.offset_ + centred_y - self.alpha_ / diag
        return mean, np.sqrt(1.0 / diag)


def loo_scale(
    truth: np.ndarray, mean: np.ndarray, sigma: np.ndarray, bounds: tuple[float, float] = (0.5, 4.0)
) -> float:
    """The factor on sigma that makes the RMS z-score of held-out predictions one (bounded)."""
    z = (np.asarray(truth) - np.asarray(mean)) / np.asarray(sigma)
    if len(z) < 3:
        return 1.0
    return float(np.clip(np.sqrt(np.mean(z**2)), *bounds))


def coverage(truth: np.ndarray, mean: np.ndarray, sigma: np.ndarray, k: float = 2.0) -> float:
    """Share of ``truth`` inside ``mean +- k sigma``."""
    truth = np.asarray(truth, dtype=float)
    if not len(truth):
        return float("nan")
    return float(np.mean(np.abs(truth - np.asarray(mean)) <= k * np.asarray(sigma)))


def posterior_samples(posterior: Posterior, samples: int, rng: np.random.Generator) -> np.ndarray:
    """``(samples, n)`` draws whose column mean and std (ddof 1) are exactly mean and sigma.

    The shape of an ensemble's member values, so the acquisition strategies work on them
    unchanged: greedy and UCB see the posterior mean and sigma, Thompson draws a sample.
    """
    z = rng.standard_normal((samples, len(posterior.mean)))
    z = (z - z.mean(axis=0)) / z.std(axis=0, ddof=1)
    return posterior.mean[None, :] + z * posterior.sigma[None, :]
