"""Alerts: what the twin tells a regulator, with the evidence, and their lifecycle.

An alert is keyed by (station, entity, code): while one is open, the same condition updates it instead
of raising another, so a persistent fault is one line on the wall display, not thousands. Lifecycle:
open → acknowledged → closed, each step with who and when (event time for the twin's own steps).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "alarm", "critical"]
Status = Literal["open", "acknowledged", "closed"]

#: Messages per code, zh-CN first (the users' language), English for the rest. ``{…}`` fields come from
#: the alert's metrics.
MESSAGES: dict[str, tuple[str, str]] = {
    "COMM_LOSS": ("{entity} 数据中断 {minutes:.0f} 分钟", "{entity} stopped reporting {minutes:.0f} min ago"),
    "DELIVERY_DETECTED": ("{entity} 识别到收油 {net_l:.0f} L（20 °C）",
                          "{entity} delivery recognised: {net_l:.0f} L at 20 °C"),
    "SENSOR_STUCK": ("{entity} 液位仪读数冻结", "{entity} gauge reading frozen"),
    "WATER_HIGH": ("{entity} 罐底水位 {water_mm:.0f} mm 超限",
                   "{entity} water bottom {water_mm:.0f} mm above limit"),
    "OVERFILL": ("{entity} 液位超过安全高度（{fill_pct:.1f}%）",
                 "{entity} above safe fill level ({fill_pct:.1f} %)"),
    "SUDDEN_LOSS": ("{entity} 无交易时油量骤减 {volume_l:.0f} L",
                    "{entity} lost {volume_l:.0f} L outside any sale"),
    "HIDDEN_SALES": ("{entity} 疑似未记录销售 {litres:.0f} L（{drops} 次）",
                     "{entity} suspected unrecorded sales: {litres:.0f} L in {drops} drops"),
    "LEAK": ("{entity} 疑似渗漏 {rate_lph:.2f} L/h", "{entity} suspected leak {rate_lph:.2f} L/h"),
    "SENSOR_DRIFT": ("{entity} 液位仪漂移 {mm_per_day:+.1f} mm/天",
                     "{entity} gauge drifting {mm_per_day:+.1f} mm/day"),
    "METER_BIAS": ("{entity} 计量偏差 {bias_pct:+.2f}%", "{entity} meter off by {bias_pct:+.2f} %"),
    "TXN_GAP": ("{entity} 交易流水号跳号 {missing} 笔", "{entity} transaction numbers skipped: {missing}"),
    "TOTALIZER_MISMATCH": ("{entity} 累计数与交易不符（差 {excess_l:.2f} L）",
                           "{entity} totalizer does not match the sale (off by {excess_l:.2f} L)"),
    "MAINBOARD_CHANGED": ("{entity} 主板更换：{old} → {new}", "{entity} mainboard changed: {old} → {new}"),
    # the platform's own fault, not the station's (actors/shard.py; no risk points, twin/risk.py)
    "TWIN_FAULT": ("本站孪生处理事件出错（事件已转入死信，见 /api/v1/deadletters）",
                   "the twin failed on events of this station (kept in the dead letters: "
                   "/api/v1/deadletters)"),
    # ---- issue 6: vapor recovery, GB 20952-2020 (twin/vapor.py) ----
    "VAPOR_AL_WARNING": ("{entity} 气液比预警：{share_pct:.0f}% 的有效加油超出 0.9–1.3"
                         "（{day}，连续 {days} 天）",
                         "{entity} A/L warning: {share_pct:.0f} % of valid fills outside 0.9–1.3 ({day}, "
                         "{days} day(s) in a row)"),
    "VAPOR_AL_ALARM": ("{entity} 气液比报警：A/L {a_l:.2f}，持续 {hours:.0f} 小时",
                       "{entity} A/L alarm: {a_l:.2f} for {hours:.0f} h"),
    "VAPOR_PRESSURE": ("油气回收系统压力接近零 {hours:.1f} 小时，密闭性失效（第 {days} 天）",
                       "vapor system pressure near zero for {hours:.1f} h: not sealed (day {days})"),
    "VAPOR_PROCESSOR": ("油气处理装置异常：{rule_zh}", "vapor processing unit: {rule_en}"),
    "VAPOR_VOC": ("油气泄漏检测浓度 {umol_per_mol:.0f} µmol/mol",
                  "VOC leak sensor {umol_per_mol:.0f} µmol/mol"),
    # ---- issue 6: safety devices and inspections (twin/safety.py) ----
    "GAS_LEL": ("{entity} 可燃气体浓度 {lel_pct:.0f}%LEL", "{entity} combustible gas at {lel_pct:.0f} %LEL"),
    "INTERSTITIAL_LEAK": ("{entity} 双层罐夹层泄漏报警（{state}）",
                          "{entity} interstitial leak sensor: {state}"),
    "UNLOADING_UNGROUNDED": ("{entity} 卸油时静电接地未连接", "{entity} unloading without static grounding"),
    "UNSAFE_BEHAVIOUR": ("{entity} 不安全行为：{behaviour_zh}（{count} 次）",
                         "{entity} unsafe behaviour: {behaviour_en} ({count}×)"),
    "INSPECTION_FINDING": ("现场检查发现问题 {findings} 项：{first}",
                           "inspection found {findings} issue(s): {first}"),
    # Regulatory loop (issue 5).
    "DELIVERY_UNDOCUMENTED": ("{entity} 收油 {net_l:.0f} L 无对应采购订单/发票（疑似无票油）",
                              "{entity} received {net_l:.0f} L with no purchase order or invoice"),
    "PO_UNDELIVERED": ("{doc} {entity}（{volume_l:.0f} L）无对应到货（疑似虚增成本/虚开发票）",
                       "{doc_en} {entity} ({volume_l:.0f} L) never reached a tank"),
    "SALES_UNDERDECLARED": ("{entity} {day} 申报销量比计量少 {missing_l:.0f} L（{missing_pct:.1f}%）",
                            "{entity} {day}: declared sales {missing_l:.0f} L ({missing_pct:.1f} %) "
                            "below metered"),
    "INVOICE_MISMATCH": ("{direction}发票 {entity} 超出实物流量 {excess_l:.0f} L（{excess_pct:.1f}%）",
                         "{direction_en} invoice {entity} exceeds the physical flow by {excess_l:.0f} L "
                         "({excess_pct:.1f} %)"),
    "PRICE_DUMPING": ("{entity} 价格 {unit_price:.2f} 元/L 低于成本或参考价（疑似低价倾销）",
                      "{entity} priced {unit_price:.2f} CNY/L below cost or reference (dumping)"),
    "CAPACITY_MISREPORT": ("{entity} 申报罐容 {declared_l:.0f} L 与实测 {measured_l:.0f} L 不符"
                           "（疑似虚报罐容）",
                           "{entity} declared capacity {declared_l:.0f} L disagrees with "
                           "{measured_l:.0f} L measured"),
    "HIDDEN_TANK": ("{entity} 销售 {nozzle_sales_l:.0f} L，其中约 {unexplained_l:.0f} L "
                    "未从申报油罐流出（疑似暗罐）",
                    "{entity} sold {nozzle_sales_l:.0f} L; {unexplained_l:.0f} L left no declared tank "
                    "(hidden tank)"),
}


@dataclass(slots=True)
class Alert:
    code: str
    severity: Severity
    station: str
    entity: str
    first_ts: float
    last_ts: float
    status: Status = "open"
    message_zh: str = ""
    message_en: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.station}/{self.entity or '-'}/{self.code}/{self.first_ts:.0f}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = self.id
        return d


#: Messages for a code whose alert carries a metric that changes what it says: (code, metric) → messages.
MESSAGE_VARIANTS: dict[tuple[str, str], tuple[str, str]] = {
    # a theft that went on after it was found, or came again while its alert was open
    ("SUDDEN_LOSS", "drops"): ("{entity} 无交易时油量骤减 共 {volume_l:.0f} L（{drops} 段）",
                               "{entity} lost {volume_l:.0f} L outside any sale in {drops} drops"),
    # raised on the tank when the books see a meter change but not whose (twin/detectors/wetstock_judge.py)
    ("METER_BIAS", "candidate_nozzles"): (
        "{entity} 所属加油枪计量变化 {bias_pct:+.2f}%（候选枪 {candidate_nozzles} 支）",
        "{entity}: a nozzle's meter changed by {bias_pct:+.2f} % (candidate nozzles: {candidate_nozzles})"),
    # ...in some hours of the day only (a cheat switched on by remote control); the last match wins
    ("METER_BIAS", "from_hour"): (
        "{entity} 所属加油枪计量变化 {bias_pct:+.2f}%（仅 {from_hour:02d}–{to_hour:02d} 时，候选枪 "
        "{candidate_nozzles} 支）",
        "{entity}: a nozzle's meter changed by {bias_pct:+.2f} % between {from_hour:02d}:00 and "
        "{to_hour:02d}:00 (candidate nozzles: {candidate_nozzles})"),
}


def render(code: str, entity: str, metrics: dict[str, Any]) -> tuple[str, str]:
    zh, en = MESSAGES.get(code, (code, code))
    for (variant_code, metric), messages in MESSAGE_VARIANTS.items():
        if variant_code == code and metric in metrics:
            zh, en = messages
    values = {"entity": entity or "站点", **metrics}
    try:
        return zh.format(**values), en.format(**{**values, "entity": entity or "station"})
    except (KeyError, ValueError):
        return f"{code} {entity}", f"{code} {entity}"


@dataclass(slots=True)
class AlertBook:
    """The open alerts of one station; raising returns the alert when something a user sees changed."""

    station: str
    open: dict[tuple[str, str], Alert] = field(default_factory=dict)

    def raise_(self, code: str, severity: Severity, entity: str, ts: float, *,
               evidence: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
               refresh: bool = False) -> Alert | None:
        """Open an alert, or update the open one of that code and entity (not a repeat: same id).

        The update is returned (to be written out) when the severity rises, or with ``refresh`` when the
        metrics changed: an estimate that improves as data arrive (a leak rate) reaches the user."""
        key = (entity, code)
        metrics = metrics or {}
        existing = self.open.get(key)
        if existing is not None:
            existing.last_ts = ts
            changed = any(existing.metrics.get(k) != v for k, v in metrics.items())
            existing.metrics.update(metrics)
            if evidence:
                existing.evidence.update(evidence)
            # The message says what the alert is now: a VOC warning become an alarm (issue 6), a
            # leak's latest rate, every hidden fill so far (it read "1 drop" while the metrics counted 5).
            rises = severity_rank(severity) > severity_rank(existing.severity)
            if rises or changed:
                existing.message_zh, existing.message_en = render(code, entity, existing.metrics)
            if rises:
                existing.severity = severity
                return existing
            return existing if refresh and changed else None
        zh, en = render(code, entity, metrics)
        alert = Alert(code, severity, self.station, entity, ts, ts, "open", zh, en, dict(evidence or {}),
                      dict(metrics), [{"status": "open", "by": "twin", "ts": ts}])
        self.open[key] = alert
        return alert

    def event(self, code: str, entity: str, ts: float, *, evidence: dict[str, Any],
              metrics: dict[str, Any]) -> Alert:
        """An informational alert that is complete when raised (a delivery), closed at once."""
        zh, en = render(code, entity, metrics)
        return Alert(code, "info", self.station, entity, ts, ts, "closed", zh, en, evidence, metrics,
                     [{"status": "closed", "by": "twin", "ts": ts}])

    def acknowledge(self, alert_id: str, code: str, entity: str, ts: float, by: str) -> None:
        """A person took the alert on: it stays open for the twin (not raised again) but says so."""
        alert = self.open.get((entity, code))
        if alert is not None and alert.id == alert_id and alert.status == "open":
            alert.status = "acknowledged"
            alert.history.append({"status": "acknowledged", "by": by, "ts": ts})

    def close(self, code: str, entity: str, ts: float, by: str = "twin") -> Alert | None:
        alert = self.open.pop((entity, code), None)
        if alert is None:
            return None
        alert.status = "closed"
        alert.last_ts = max(alert.last_ts, ts)
        alert.history.append({"status": "closed", "by": by, "ts": ts})
        return alert


_RANK = {"info": 0, "warning": 1, "alarm": 2, "critical": 3}


def severity_rank(severity: str) -> int:
    return _RANK.get(severity, 0)


def link_hidden_sales(book: AlertBook, tank: str, nozzles: Iterable[str], ts: float) -> list[Alert]:
    """Point a tank's open HIDDEN_SALES and its nozzles' open ones at each other; return those changed.

    One cheat can raise two alerts: the tank's, from the gauge (litres gone with no transaction), and a
    nozzle's, where a vapor-recovery monitor saw the fills unreported. An inspector should see that they
    are one finding from two witnesses: the tank's evidence lists ``nozzles_named`` and each nozzle's
    carries ``tank_alert_id``. Both stay open, each with its own lifecycle."""
    tank_alert = book.open.get((tank, "HIDDEN_SALES"))
    if tank_alert is None:
        return []
    named = [n for n in nozzles if (n, "HIDDEN_SALES") in book.open]
    if not named:
        return []
    changed: list[Alert] = []
    for nozzle in named:
        alert = book.open[(nozzle, "HIDDEN_SALES")]
        if alert.evidence.get("tank_alert_id") != tank_alert.id:
            alert.evidence["tank_alert_id"] = tank_alert.id
            alert.last_ts = ts
            changed.append(alert)
    listed = sorted(set(tank_alert.evidence.get("nozzles_named", [])) | set(named))
    if listed != tank_alert.evidence.get("nozzles_named"):
        tank_alert.evidence["nozzles_named"] = listed
        tank_alert.last_ts = ts
        changed.append(tank_alert)
    return changed
