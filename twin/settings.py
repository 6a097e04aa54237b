"""Detector and twin settings: every threshold is a documented setting a researcher can change."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from twin.deliveries import DeliverySettings
from twin.detectors.fill_witness import WitnessSettings
from twin.detectors.losses import LossSettings
from twin.detectors.regulatory import RegulatorySettings
from twin.detectors.wetstock import WetstockSettings
from twin.safety import SafetySettings
from twin.vapor import VaporSettings


class TwinSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: A tank gauge that has not reported for this long (event time, by the station's watermark) is
    #: stale and raises COMM_LOSS. Five 60 s readings missed; issue 3 asks for detection within 15 min.
    stale_tank_s: float = Field(default=300.0, gt=0)
    #: Nozzles only speak when used; a quiet night at a small station is not a fault.
    stale_nozzle_s: float = Field(default=24 * 3600.0, gt=0)
    #: Rise threshold, settle time and tolerance of delivery recognition.
    delivery_rise_threshold_l: float = Field(default=200.0, gt=0)
    delivery_settle_s: float = Field(default=600.0, gt=0)
    delivery_settle_tol_l: float = Field(default=20.0, gt=0)
    #: A probe that repeats the same level, water and temperature this long is stuck (SENSOR_STUCK).
    gauge_stuck_after_s: float = Field(default=600.0, gt=0)
    #: Volume leaving a tank outside any transaction that is reported (SUDDEN_LOSS), the width of the
    #: bins it is judged on, and how many fill-like unrecorded drops within 48 h make HIDDEN_SALES.
    loss_threshold_l: float = Field(default=40.0, gt=0)
    loss_bin_s: float = Field(default=180.0, gt=0)
    hidden_confirmations: int = Field(default=1, ge=1)
    #: Smaller unrecorded fills: a fall of at least this many litres and standard errors between the
    #: hour before a 2-minute gap and the hour after it (twin/detectors/losses.py StepTest).
    loss_step_threshold_l: float = Field(default=15.0, gt=0)
    loss_step_sigmas: float = Field(default=7.0, gt=0)
    #: ...read on top of the two hours' steady fall where that slope has a t of at least this (a leak).
    loss_step_trend_t: float = Field(default=3.0, gt=0)
    #: The loss detectors see the divergence less what booked sales made of it through each nozzle's
    #: fitted β (meter plus chart error), each β capped at this fraction (legal meter ±0.3 %, JJG 443,
    #: plus a chart's 0.3 %); 0 turns the correction off (twin/detectors/wetstock_judge.py).
    loss_sales_factor_max: float = Field(default=0.006, ge=0, le=0.05)
    #: Wetstock reconciliation (LEAK, METER_BIAS, SENSOR_DRIFT): see twin/detectors/wetstock.py.
    leak_min_lph: float = Field(default=0.3, gt=0)
    leak_t: float = Field(default=6.0, gt=0)
    meter_min: float = Field(default=0.007, gt=0)
    meter_t: float = Field(default=10.0, gt=0)
    meter_min_sales_l: float = Field(default=500.0, ge=0)
    #: A gain is no SENSOR_DRIFT, a loss no LEAK, while one nozzle's sales since an onset fit it this
    #: much better (Δχ²) than time since one: a meter that changed (WetstockSettings, WetstockJudge).
    drift_meter_chi2: float = 0.0
    leak_meter_chi2: float = 9.0
    #: A LEAK's 95 % interval takes a standard error robust to correlated rows over this many neighbouring
    #: 3-hour chunks (Newey–West; 0: per chunk only; None: plain OLS) — WetstockSettings.leak_ci_lags.
    leak_ci_lags: int | None = Field(default=4, ge=0)
    #: A LEAK's rate is fitted from its onset with a step there too (WetstockSettings.leak_onset_step).
    leak_onset_step: bool = True
    #: METER_BIAS from a meter change (WetstockJudge.meter_change): scanned every this many seconds of
    #: event time over onsets of the last ``meter_change_days``; raised at Δχ² ≥ ``meter_change_chi2``
    #: against no change and ≥ ``meter_change_vs_time_chi2`` against a trend from an onset, with the
    #: change outside ±``meter_change_floor`` at 95 % confidence; a change in some hours of the day only
    #: at Δχ² ≥ ``meter_change_window_chi2``.
    meter_change_every_s: float = Field(default=3 * 3600.0, gt=0)
    meter_change_days: float = Field(default=7.0, gt=0)
    meter_change_chi2: float = Field(default=30.0, ge=0)
    meter_change_window_chi2: float = Field(default=65.0, ge=0)
    meter_change_vs_time_chi2: float = 9.0
    meter_change_floor: float = Field(default=0.003, ge=0)
    #: The declared chart's error beyond a constant factor, fitted in every wetstock fit as a polynomial
    #: u², u³, … of the book's fill fraction with this many terms; off (0) by default, for charts far
    #: worse than ±0.3 % (why: WetstockSettings.chart_terms).
    chart_terms: int = Field(default=0, ge=0, le=4)
    #: A fill the vapor-recovery monitor recorded is the dispenser's transaction if they ended within
    #: ``fill_match_s`` with litres within ``fill_match_pct`` % + 0.5 L; a fill matching none, that the
    #: totalizer did not count either, is an unrecorded sale (twin/detectors/fill_witness.py).
    fill_match_s: float = Field(default=120.0, gt=0)
    fill_match_pct: float = Field(default=2.0, ge=0)
    #: How many recent transactions a station twin keeps for the UI.
    recent_transactions: int = Field(default=50, ge=0)
    #: Vapor-recovery judgement (GB 20952-2020 §5.3, §5.4, §4.6.1, Appendix E.3.3): every threshold is a
    #: field of twin/vapor.py VaporSettings, overridden as ``settings: {vapor: {min_fills_judged: 5}}``.
    vapor: VaporSettings = Field(default_factory=VaporSettings)
    #: Safety devices (GAS_LEL levels after GB/T 50493-2019, …): twin/safety.py SafetySettings.
    safety: SafetySettings = Field(default_factory=SafetySettings)

    #: Regulatory checks (issue 5): documents against the physical flow; see twin/detectors/regulatory.py
    #: and twin/regulatory.py for what each threshold means.
    match_tolerance_pct: float = Field(default=0.5, gt=0)
    undocumented_window_s: float = Field(default=12 * 3600.0, gt=0)
    undocumented_min_l: float = Field(default=1000.0, ge=0)
    undelivered_window_s: float = Field(default=12 * 3600.0, gt=0)
    invoice_tolerance_pct: float = Field(default=0.5, ge=0)
    declaration_tolerance_pct: float = Field(default=0.5, ge=0)
    dumping_cost_margin_pct: float = Field(default=0.0, ge=0)
    dumping_reference_margin_pct: float = Field(default=10.0, ge=0)
    capacity_tolerance_pct: float = Field(default=10.0, gt=0)
    hidden_min_l: float = Field(default=100.0, gt=0)
    hidden_min_pct: float = Field(default=10.0, gt=0)

    def regulatory(self) -> RegulatorySettings:
        return RegulatorySettings(
            match_tolerance_pct=self.match_tolerance_pct, undocumented_window_s=self.undocumented_window_s,
            undocumented_min_l=self.undocumented_min_l, undelivered_window_s=self.undelivered_window_s,
            invoice_tolerance_pct=self.invoice_tolerance_pct,
            declaration_tolerance_pct=self.declaration_tolerance_pct,
            dumping_cost_margin_pct=self.dumping_cost_margin_pct,
            dumping_reference_margin_pct=self.dumping_reference_margin_pct,
            capacity_tolerance_pct=self.capacity_tolerance_pct, hidden_min_l=self.hidden_min_l,
            hidden_min_pct=self.hidden_min_pct)

    def wetstock(self) -> WetstockSettings:
        return WetstockSettings(**{name: getattr(self, name) for name in _WETSTOCK_FIELDS})

    def losses(self) -> LossSettings:
        return LossSettings(bin_s=self.loss_bin_s, threshold_l=self.loss_threshold_l,
                            hidden_confirmations=self.hidden_confirmations,
                            step_threshold_l=self.loss_step_threshold_l, step_sigmas=self.loss_step_sigmas,
                            step_trend_t=self.loss_step_trend_t)

    def fill_witness(self) -> WitnessSettings:
        return WitnessSettings(match_s=self.fill_match_s, match_rel=self.fill_match_pct / 100.0)

    def delivery(self) -> DeliverySettings:
        return DeliverySettings(rise_threshold_l=self.delivery_rise_threshold_l,
                                settle_s=self.delivery_settle_s, settle_tol_l=self.delivery_settle_tol_l)


#: The TwinSettings fields that are WetstockSettings' (same names).
_WETSTOCK_FIELDS = ("leak_min_lph", "leak_t", "meter_min", "meter_t", "meter_min_sales_l", "drift_meter_chi2",
                    "leak_meter_chi2", "leak_ci_lags", "leak_onset_step", "meter_change_every_s",
                    "meter_change_days", "meter_change_chi2", "meter_change_window_chi2",
                    "meter_change_vs_time_chi2", "meter_change_floor", "chart_terms")
