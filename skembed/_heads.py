"""Maps from one similarity to the user's scale that keep the order of the pairs."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_is_fitted

#: Slope of the map beyond the outermost knots, as a share of the slope next to them:
#: flat enough to act as the isotonic fit's clipping, steep enough to keep the order.
EDGE_SLOPE = 0.01
#: ... and at most so steep that over a whole cosine range ([-1, 1]) the map leaves
#: the range of ``y`` by no more than this share of it.
EDGE_SPREAD = 1e-3


class MonotoneInterpolation(RegressorMixin, BaseEstimator):
    """A strictly increasing map through the steps of an isotonic regression.

    An isotonic regression of ``y`` on a similarity is a staircase: every
    similarity of one step gets the same score, and such ties lower a rank
    correlation. This map joins the steps' centres (the mean similarity of
    each step, at its level) by straight lines, and continues past the
    outermost ones with a small slope, so that it is strictly increasing:
    ``predict`` orders pairs exactly as their similarity does. For cosine
    similarities (in [-1, 1]) the predictions stay within 0.1% of the range of
    ``y`` seen in :meth:`fit` of that range.

    Attributes
    ----------
    knots_x_, knots_y_ : ndarray
        The steps' centres and levels, both strictly increasing.
    edge_slopes_ : tuple of float
        The slopes below the first knot and above the last.

    Examples
    --------
    >>> head = MonotoneInterpolation().fit([0.1, 0.2, 0.4, 0.5], [0.0, 1.0, 3.0, 3.0])
    >>> head.knots_x_.tolist(), head.knots_y_.tolist()
    ([0.1, 0.2, 0.45], [0.0, 1.0, 3.0])
    >>> bool(np.all(np.diff(head.predict([0.0, 0.4, 0.45, 0.5, 0.9])) > 0))
    True
    """

    def fit(self, X, y):
        x = np.asarray(X, dtype=np.float64).ravel()
        y = np.asarray(y, dtype=np.float64)
        levels = IsotonicRegression(increasing=True).fit(x, y).predict(x)
        order = np.argsort(x, kind="stable")
        x, levels = x[order], levels[order]
        # Equal similarities get equal levels, so a step never splits them.
        starts = np.flatnonzero(np.r_[True, np.diff(levels) > 0])
        self.knots_x_ = np.add.reduceat(x, starts) / np.diff(np.r_[starts, len(x)])
        self.knots_y_ = levels[starts]
        # Past a knot the map may run over at most a cosine range of 2.
        steepest = EDGE_SPREAD * (np.ptp(y) or 1.0) / 2
        if len(starts) > 1:
            slopes = np.diff(self.knots_y_) / np.diff(self.knots_x_)
            self.edge_slopes_ = tuple(min(EDGE_SLOPE * s, steepest) for s in slopes[[0, -1]])
        else:  # one level: any strictly increasing line through it keeps the order
            self.edge_slopes_ = (steepest, steepest)
        return self

    def predict(self, X):
        check_is_fitted(self, "knots_x_")
        x = np.asarray(X, dtype=np.float64).ravel()
        out = np.interp(x, self.knots_x_, self.knots_y_)
        below, above = x < self.knots_x_[0], x > self.knots_x_[-1]
        out[below] = self.knots_y_[0] + self.edge_slopes_[0] * (x[below] - self.knots_x_[0])
        out[above] = self.knots_y_[-1] + self.edge_slopes_[1] * (x[above] - self.knots_x_[-1])
        return out
