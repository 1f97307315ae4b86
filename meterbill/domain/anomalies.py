"""Anomaly detection on one customer's hourly usage of one meter (pure: no clock, no storage).

Baseline (docs/decisions.md, "Anomaly detection"): for each hour, the median of the same hour of
the week in the last ``weeks`` weeks (weekly and daily seasonality at once); with fewer than
``min_weeks`` such weeks of history, the median of the same hour of the day over the last ``days``
days. The spread is the median absolute deviation of those samples (× 1.4826, a normal
distribution's σ), floored at ``rel_floor`` × the median, at √median (the noise of a count: a
Poisson variable's σ) and at ``abs_floor`` units, so a perfectly regular or a small history (four
samples) does not turn every wobble into an anomaly. An hour is

* a ``spike`` when observed > median + threshold × spread,
* a ``drop`` when observed < median − threshold × spread,
* ``silent`` when nothing was reported for ``silent_hours`` hours or more in a row at hours the
  meter normally reports (at least ``reporting_share`` of the samples non-zero, median > 0), and
  the run's expected total is more than threshold × its spread (√Σspread²) above zero.

Consecutive hours of one kind are one anomaly: its window, the summed expected range, the summed
observed value and the largest score. Everything is Decimal (no float anywhere): the same series
gives the same anomalies on every machine. Hours are epoch seconds at an hour boundary; an hour
missing from the series had no usage (0)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal

HOUR = 3600
DAY = 24 * HOUR
WEEK = 7 * DAY
KINDS = ("spike", "drop", "silent")
MAD_TO_SIGMA = Decimal("1.4826")
SCORE_STEP = Decimal("0.01")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    weeks: int = 4                 # hour-of-week samples (weekly seasonality)
    min_weeks: int = 2             # fewer weeks of history: hour-of-day fallback
    days: int = 7                  # hour-of-day samples (fallback: daily seasonality only)
    min_days: int = 3              # fewer days of history: no baseline, nothing flagged
    threshold: Decimal = Decimal("4.5")   # in spreads (a robust z-score); bench/anomalies.py
    rel_floor: Decimal = Decimal("0.15")  # spread at least this share of the median
    abs_floor: Decimal = Decimal(1)       # and at least this many units
    silent_hours: int = 2          # zero hours in a row before a reporting meter counts as silent
    reporting_share: Decimal = Decimal("0.75")  # share of non-zero samples: "normally reports"
    extend_hours: int = 168        # a run flagged at the first scanned hour is followed back this far

    def history_s(self) -> int:
        """Seconds of history before the first scanned hour the detector reads."""
        return max(self.weeks * WEEK, self.days * DAY) + self.extend_hours * HOUR


DEFAULT = DetectorConfig()


@dataclass(frozen=True, slots=True)
class Baseline:
    median: Decimal
    low: Decimal
    high: Decimal
    spread: Decimal
    reporting: bool        # the meter normally reports at this hour
    seasonality: str       # weekly | daily


@dataclass(frozen=True, slots=True)
class Anomaly:
    customer: str
    meter: str
    kind: str              # spike | drop | silent
    start_s: int           # window [start_s, end_s), hour boundaries
    end_s: int
    expected: Decimal      # the baseline medians over the window, summed
    expected_low: Decimal
    expected_high: Decimal
    observed: Decimal
    score: Decimal         # the largest |observed − median| / spread of the window's hours
    seasonality: str

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What identifies the anomaly: re-scans find it again under the same key."""
        return self.customer, self.meter, self.kind, self.start_s


def floor_hour(epoch_s: int) -> int:
    return epoch_s - epoch_s % HOUR


def _samples(series: Mapping[int, Decimal], hour: int, first_s: int, step: int, n: int) -> list[Decimal]:
    return [series.get(hour - k * step, ZERO) for k in range(1, n + 1) if hour - k * step >= first_s]


def baseline(series: Mapping[int, Decimal], hour: int, first_s: int, config: DetectorConfig = DEFAULT
             ) -> Baseline | None:
    """The expected value of ``hour`` from the history before it (none before ``first_s``, the
    first hour the meter has history for), or None when the history is too short."""
    samples, seasonality = _samples(series, hour, first_s, WEEK, config.weeks), "weekly"
    if len(samples) < config.min_weeks:
        samples, seasonality = _samples(series, hour, first_s, DAY, config.days), "daily"
        if len(samples) < config.min_days:
            return None
    median = statistics.median(samples)
    mad = statistics.median(abs(s - median) for s in samples)
    spread = max(mad * MAD_TO_SIGMA, median * config.rel_floor, median.sqrt(), config.abs_floor)
    reach = config.threshold * spread
    nonzero = sum(1 for s in samples if s > 0)
    return Baseline(median, max(ZERO, median - reach), median + reach, spread,
                    median > 0 and nonzero >= config.reporting_share * len(samples), seasonality)


def _score(observed: Decimal, b: Baseline) -> Decimal:
    return (abs(observed - b.median) / b.spread).quantize(SCORE_STEP, ROUND_HALF_EVEN)


def _kind(observed: Decimal, b: Baseline) -> str | None:
    if observed > b.high:
        return "spike"
    if observed == 0 and b.reporting:
        return "silent"       # confirmed (or turned into a drop) by its run's length
    if observed < b.low:
        return "drop"
    return None


def detect(series: Mapping[int, Decimal], first_s: int, start_s: int, end_s: int, customer: str, meter: str,
           config: DetectorConfig = DEFAULT, stored: Iterable[Anomaly] = ()) -> list[Anomaly]:
    """Anomalies of the hours [start_s, end_s) of ``series`` (hour start → value). A run of one kind
    already going on at ``start_s`` is followed back up to ``config.extend_hours``, so scanning any
    range that meets an anomaly finds it with the same start; a run that continues a ``stored``
    anomaly (same meter and kind, starting inside or right at the end of its window) is that
    anomaly, extended: an anomaly longer than the look-back keeps the key it was first stored under."""
    start_s, end_s = floor_hour(start_s), floor_hour(end_s + HOUR - 1)
    flagged: list[_Hour] = []
    for hour in range(max(start_s - config.extend_hours * HOUR, floor_hour(first_s)), end_s, HOUR):
        b = baseline(series, hour, first_s, config)
        if b is None:
            continue
        observed = series.get(hour, ZERO)
        kind = _kind(observed, b)
        if kind is not None:
            flagged.append((hour, kind, observed, b))
    runs = []
    for run in _runs(flagged):
        if run[0][1] == "silent" and not _silent(run, config):
            runs.extend(_runs([(h, "drop", o, b) for h, _, o, b in run if o < b.low]))
        else:
            runs.append(run)
    mine = [s for s in stored if s.customer == customer and s.meter == meter]
    out = []
    for run in runs:
        if run[-1][0] + HOUR <= start_s or run[0][0] >= end_s:
            continue
        earlier = [s for s in mine if s.kind == run[0][1] and s.start_s < run[0][0] <= s.end_s]
        if not earlier:
            out.append(_anomaly(run, customer, meter))
            continue
        first = min(earlier, key=lambda s: s.start_s)
        tail = [entry for entry in run if entry[0] >= first.end_s]
        out.append(first if not tail else _extended(first, _anomaly(tail, customer, meter)))
    return out


_Hour = tuple[int, str, Decimal, Baseline]   # hour, kind, observed, baseline


def _silent(run: Sequence[_Hour], config: DetectorConfig) -> bool:
    """A run of zero hours is a silence when it is long enough and nothing at all over the run is
    itself far below what the run's hours together should have reported (the spreads added as
    independent noises: √Σspread²) — two quiet night hours of a small meter are not a silence."""
    if len(run) < config.silent_hours:
        return False
    expected = sum((b.median for *_, b in run), ZERO)
    return expected > config.threshold * _run_spread(run)


def _run_spread(run: Sequence[_Hour]) -> Decimal:
    return sum((b.spread * b.spread for *_, b in run), ZERO).sqrt()


def _runs(flagged: Sequence[_Hour]) -> list[list[_Hour]]:
    runs: list[list[_Hour]] = []
    for entry in flagged:
        last = runs[-1][-1] if runs else None
        if last is not None and last[1] == entry[1] and last[0] + HOUR == entry[0]:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _anomaly(run: Sequence[_Hour], customer: str, meter: str) -> Anomaly:
    return Anomaly(customer=customer, meter=meter, kind=run[0][1], start_s=run[0][0], end_s=run[-1][0] + HOUR,
                   expected=sum((b.median for *_, b in run), ZERO),
                   expected_low=sum((b.low for *_, b in run), ZERO),
                   expected_high=sum((b.high for *_, b in run), ZERO),
                   observed=sum((o for _, _, o, _ in run), ZERO),
                   score=(sum((b.median for *_, b in run), ZERO) / _run_spread(run)).quantize(SCORE_STEP)
                   if run[0][1] == "silent" else max(_score(o, b) for _, _, o, b in run),
                   seasonality=run[0][3].seasonality)


def _extended(first: Anomaly, tail: Anomaly) -> Anomaly:
    """``first`` (stored) followed by the hours of ``tail`` (right after its end)."""
    return replace(first, end_s=tail.end_s, expected=first.expected + tail.expected,
                   expected_low=first.expected_low + tail.expected_low,
                   expected_high=first.expected_high + tail.expected_high,
                   observed=first.observed + tail.observed, score=max(first.score, tail.score))
