"""Retransmission timeout estimation (RFC 6298) with exponential backoff."""

from __future__ import annotations


class RttEstimator:
    """SRTT/RTTVAR smoothing, RTO clamped to ``[rto_min, rto_max]``, doubled per backoff."""

    __slots__ = ("srtt", "rttvar", "rto", "rto_min", "rto_max", "granularity")

    def __init__(self, initial: float, rto_min: float, rto_max: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.rto_min = rto_min
        self.rto_max = rto_max
        self.granularity = 0.001
        self.rto = min(max(initial, rto_min), rto_max)

    def sample(self, r: float) -> None:
        """Fold in one RTT measurement (seconds) and recompute the RTO (RFC 6298 §2)."""
        if r < 0:
            return
        if self.srtt is None:
            self.srtt = r
            self.rttvar = r / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - r)
            self.srtt = 0.875 * self.srtt + 0.125 * r
        self._reset()

    def _reset(self) -> None:
        assert self.srtt is not None
        rto = self.srtt + max(self.granularity, 4 * self.rttvar)
        self.rto = min(max(rto, self.rto_min), self.rto_max)

    def backoff(self) -> None:
        """A retransmission timer expired: double the RTO (RFC 6298 §5.5)."""
        self.rto = min(self.rto * 2, self.rto_max)

    def restore(self) -> None:
        """New data was acknowledged: drop the backoff."""
        if self.srtt is not None:
            self._reset()


__all__ = ["RttEstimator"]
