// The station twin's vapor-recovery (油气回收) and safety / inspection / risk panels: pure renderers of
// what the APIs return (GET /stations/{id}/vapor, GET /risk?station=, the station's alerts) and of the
// live station state's `safety` part, so station.js only fetches and decides when to redraw. Every
// figure is written as text; nothing is dumped as JSON. Limits shown are the standards' own values with
// their clauses (GB 20952-2020 for vapor recovery, GB/T 50493-2019 for combustible gas).
"use strict";

const FTPanels = (() => {
  const {t, fmt, el} = FT;

  Object.assign(FT.I18N.zh, {
    safetyRisk: "安全检查与风险", vaporNone: "暂无油气回收数据", v_compliant: "合规", v_warning: "预警",
    v_alarm: "报警", v_no_data: "暂无数据", v_not_judged: "未判定（有效加油不足 5 次）", v_pending: "待判定",
    monitorClock: "监测时间", pressure: "系统压力", processor: "后处理装置", p_running: "运行",
    p_stopped: "停止", p_fault: "故障", p_absent: "未安装", outlet: "排放浓度（最大小时均值）",
    limit: "限值", vocLeak: "VOC 泄漏浓度", vocLevels: "预警 {w} / 报警 {a}", today: "今日（进行中）",
    validFills: "有效加油", medianAL: "A/L 中位数", inRange: "1.0–1.2 占比", nearZero: "近零压力最长",
    judgedDay: "最近判定日 {day} · 各汽油油枪", firstDayOpen: "首个判定日尚未结束（次日 1 时判定）",
    fillsJudged: "判定加油次数", dayStatus: "当日判定", lastAL: "最新 A/L", nowStatus: "当前",
    warnDays: "连续预警天数", vaporAlerts: "未关闭的油气回收告警", alHistory: "各油枪每日 A/L 中位数",
    risk: "风险", r_low: "低", r_medium: "中", r_high: "高", riskReasons: "风险构成",
    noRiskReasons: "无风险因素", viewAlert: "查看告警", closedAlert: "已关闭告警", viewRecord: "查看记录",
    devices: "安全设备（最新读数）", noDevices: "暂无安全设备数据", device: "设备", sensor: "类型",
    reading: "读数", s_gas_lel: "可燃气体", s_interstitial: "双层罐夹层", s_grounding: "静电接地",
    s_video: "视频分析", st_ok: "正常", st_leak: "渗漏", st_fault: "故障", st_grounded: "已接地",
    st_ungrounded: "未接地", st_smoking: "吸烟", st_phone: "使用手机", st_unattended_unloading: "卸油无人监护",
    unloading: "卸油中", inspectionFindings: "检查发现", noInspections: "暂无检查记录",
    reportsTotal: "检查报告 {n} 份", inspector: "检查人", failedChecks: "未通过项", rs_info: "一般",
    rs_minor: "轻微", rs_major: "较重", rs_critical: "严重",
    fillsVsTxns: "监测加油与交易比对", fv_matched: "有交易", fv_unreported: "未上报（疑似隐匿销售）",
    fv_lost: "记录丢失（累计数已计）", fv_disagree: "油量不符", fv_pending: "待判",
  });
  Object.assign(FT.I18N.en, {
    safetyRisk: "Safety, inspections and risk", vaporNone: "No vapor-recovery data", v_compliant: "compliant",
    v_warning: "warning", v_alarm: "alarm", v_no_data: "no data", v_not_judged: "not judged (< 5 valid fills)", v_pending: "pending",
    monitorClock: "Monitor time", pressure: "System pressure", processor: "Processing unit", p_running: "running",
    p_stopped: "stopped", p_fault: "fault", p_absent: "none fitted", outlet: "Outlet (max. 1-hour average)",
    limit: "limit", vocLeak: "VOC leak sensor", vocLevels: "warning {w} / alarm {a}", today: "Today (open)",
    validFills: "Valid fills", medianAL: "Median A/L", inRange: "Share in 1.0–1.2", nearZero: "Longest near 0 Pa",
    judgedDay: "Last judged day {day} · gasoline nozzles", firstDayOpen: "first day not judged yet (at 01:00 next day)",
    fillsJudged: "Fills judged", dayStatus: "Day", lastAL: "Last A/L", nowStatus: "Now",
    warnDays: "Warning days in a row", vaporAlerts: "Open vapor-recovery alerts", alHistory: "Daily median A/L by nozzle",
    risk: "Risk", r_low: "low", r_medium: "medium", r_high: "high", riskReasons: "What makes up the score",
    noRiskReasons: "no risk factors", viewAlert: "view alert", closedAlert: "closed alert",
    viewRecord: "view record", devices: "Safety devices (latest readings)", noDevices: "No safety-device data",
    device: "Device", sensor: "Sensor", reading: "Reading", s_gas_lel: "combustible gas",
    s_interstitial: "interstitial space", s_grounding: "static grounding", s_video: "video analytics",
    st_ok: "ok", st_leak: "leak", st_fault: "fault", st_grounded: "grounded", st_ungrounded: "ungrounded",
    st_smoking: "smoking", st_phone: "phone use", st_unattended_unloading: "unloading unattended",
    unloading: "unloading", inspectionFindings: "Inspection findings", noInspections: "No inspection records",
    reportsTotal: "{n} inspection reports", inspector: "Inspector", failedChecks: "Failed items",
    rs_info: "info", rs_minor: "minor", rs_major: "major", rs_critical: "critical",
    fillsVsTxns: "Monitor fills vs transactions", fv_matched: "with a transaction",
    fv_unreported: "unreported (hidden sales?)", fv_lost: "record lost (totalizer counted)",
    fv_disagree: "litres disagree", fv_pending: "pending",
  });

  // GB 20952-2020: §5.3 A/L 1.0–1.2, §5.4 outlet ≤ 25 g/m³ (1-hour average); E.3.3 VOC leak sensor
  // warning at 4,000 and alarm at 8,000 µmol/mol (the defaults twin/vapor.py judges by).
  const OUTLET_LIMIT = 25, VOC_WARNING = 4000, VOC_ALARM = 8000;
  const VAPOR_CODES = new Set(["VAPOR_AL_WARNING", "VAPOR_AL_ALARM", "VAPOR_PRESSURE", "VAPOR_PROCESSOR", "VAPOR_VOC"]);

  const al = (v) => v == null ? "—" : v.toFixed(3);
  const share = (v) => v == null ? "—" : `${fmt.n1(100 * v)} %`;
  const known = (prefix, v) => v == null || v === "" ? "—" : (FT.I18N.zh[`${prefix}${v}`] ? t(`${prefix}${v}`) : v);
  const badge = (kind, value, text, attrs) => el("span", {class: `badge lv-${value}`, "data-role": kind,
                                                           "data-value": value, text, ...attrs});
  function factsOf(pairs) {
    return el("dl", {class: "facts panel-facts"}, ...pairs.flatMap(([label, value, field]) =>
      [el("dt", {text: label}), el("dd", {"data-field": field, text: value})]));
  }

  // Scroll to something on the page the reason traces to, and make it blink once.
  function jump(target) {
    if (!target) return;
    target.scrollIntoView({block: "center", behavior: "smooth"});
    target.classList.remove("flash");
    void target.offsetWidth;  // restart the animation
    target.classList.add("flash");
  }
  function alertNode(alertId) {
    return [...document.querySelectorAll(".alert-item[data-alert]")].find((n) => n.dataset.alert === alertId) || null;
  }
  function alertLink(a) {
    return el("a", {href: "#", "data-alert-link": a.id, text: t("viewAlert"),
                    onclick: (e) => { e.preventDefault(); jump(alertNode(a.id)); }});
  }

  // The API's shape of the vapor view, from the live station state's `vapor` part (the websocket's
  // state messages carry it) and the alerts this page holds: the panel follows the live data between
  // two reads of GET /stations/{id}/vapor.
  function vaporFromState(stateVapor, alerts) {
    if (!stateVapor) return null;
    return {status: stateVapor.status, clock: stateVapor.clock, today: stateVapor.today,
            pressure_pa: stateVapor.pressure_pa, processor_state: stateVapor.processor_state,
            voc_umol_mol: stateVapor.voc_umol_mol, nozzles: stateVapor.nozzles || [],
            history: [...(stateVapor.history || [])].reverse(),
            alerts: [...alerts].filter((a) => VAPOR_CODES.has(a.code) && a.status !== "closed"),
            fills_vs_transactions: stateVapor.fills_vs_transactions || null};
  }

  let chart = null;
  let chartKey = "";

  // The vapor panel: nothing but one line when the station sends no vapor data. The figures are redrawn
  // at every call (the live state's pace, at most once a second); the history chart only when a day
  // closes or the language changes.
  function renderVapor(root, v) {
    const none = !v || (v.status === "no_data" && !(v.nozzles || []).length && !(v.history || []).length && v.clock == null);
    root.dataset.state = none ? "none" : "data";
    if (none) {
      if (chart) { chart.dispose(); chart = null; chartKey = ""; }
      root.replaceChildren(el("div", {class: "muted", "data-role": "vapor-none", text: t("vaporNone")}));
      return;
    }
    let body = root.querySelector(":scope > .vapor-body");
    let wrap = root.querySelector(":scope > .vapor-chart-wrap");
    if (!body || !wrap) {
      if (chart) { chart.dispose(); chart = null; chartKey = ""; }
      body = el("div", {class: "vapor-body"});
      wrap = el("div", {class: "vapor-chart-wrap"}, el("div", {class: "small muted sub"}),
                el("div", {class: "small-chart", id: "vapor-chart"}));
      root.replaceChildren(body, wrap);
    }
    body.replaceChildren(...vaporBody(v));
    const history = v.history || [];
    wrap.hidden = !history.length;
    wrap.firstChild.textContent = t("alHistory");
    const key = `${historyKey(v)}|${(v.nozzles || []).map((n) => n.id).join(",")}|${FT.lang()}`;
    if (history.length && key !== chartKey) {
      if (!chart) chart = echarts.init(wrap.lastChild);
      drawHistory(chart, v);
      chartKey = key;
    }
  }

  // Every fill the monitor recorded, against the dispensers' transactions (HIDDEN_SALES on a nozzle
  // when one was never reported nor counted by its totalizer).
  function fillsVsTxns(c) {
    if (!c) return "—";
    return [["fv_matched", c.matched], ["fv_unreported", c.unreported], ["fv_lost", c.lost_records],
            ["fv_disagree", c.litres_disagree], ["fv_pending", c.pending]]
      .map(([k, n]) => `${t(k)} ${fmt.int(n || 0)}`).join(" · ");
  }

  function vaporBody(v) {
    const last = (v.history || [])[0] || null;  // newest closed day
    const rec = last ? last.station : null;
    const head = el("div", {class: "panel-head"},
      badge("vapor-status", v.status, t(`v_${v.status}`)),
      el("span", {class: "muted", text: `${t("monitorClock")} ${fmt.time(v.clock)}`}));
    const outlet = rec && rec.processor ? rec.processor.outlet_max_hourly_g_m3 : null;
    const td = v.today;
    const facts = factsOf([
      [t("pressure"), v.pressure_pa == null ? "—" : `${fmt.n1(v.pressure_pa)} Pa`, "pressure_pa"],
      [t("processor"), known("p_", v.processor_state), "processor_state"],
      [`${t("outlet")}${last ? ` · ${last.day}` : ""}`,
       `${outlet == null ? "—" : `${fmt.n2(outlet)} g/m³`} (${t("limit")} ${OUTLET_LIMIT} g/m³, GB 20952-2020 §5.4)`, "outlet"],
      [t("vocLeak"), `${v.voc_umol_mol == null ? "—" : `${fmt.int(v.voc_umol_mol)} µmol/mol`} `
        + `(${t("vocLevels", {w: fmt.int(VOC_WARNING), a: fmt.int(VOC_ALARM)})}, E.3.3)`, "voc"],
      [`${t("today")}${td ? ` · ${td.day}` : ""}`, td ? `${t("validFills")} ${fmt.int(td.valid_fills)} · ${t("medianAL")} `
        + `${al(td.median_a_l)} · ${t("inRange")} ${share(td.share_in_range)} · ${t("nearZero")} ${fmt.n1(td.longest_near_zero_h)} h`
        : "—", "today"],
      [t("fillsVsTxns"), fillsVsTxns(v.fills_vs_transactions), "fills_vs_transactions"],
    ]);
    // Per gasoline nozzle: the last judged day's record (E.3.3 judgement, §5.3 share) and the live flags.
    const records = new Map(((last && last.nozzles) || []).map((r) => [r.nozzle, r]));
    const cols = [["nozzle", (n) => n.id, "nozzle"], ["fillsJudged", (n, r) => r ? fmt.int(r.fills_judged) : "—", "fills_judged"],
      ["medianAL", (n, r) => al(r && r.median_a_l), "median_a_l"], ["inRange", (n, r) => share(r && r.share_in_range), "share_in_range"],
      ["dayStatus", (n, r) => r ? t(`v_${r.status}`) : "—", "day_status"], ["lastAL", (n) => al(n.last_a_l), "last_a_l"],
      ["warnDays", (n) => fmt.int(n.warning_days), "warning_days"]];
    // Now: an open alarm or warning, else compliant once the nozzle has a judged day on record (E.3.3:
    // fewer than 5 valid fills are carried over, not judged).
    const judged = new Set((v.history || []).flatMap((d) => (d.nozzles || []).filter((r) => r.judged).map((r) => r.nozzle)));
    const nowStatus = (n) => n.alarm ? "alarm" : n.warning ? "warning" : judged.has(n.id) ? "compliant" : "pending";
    const table = el("table", {class: "list", id: "vapor-nozzles", "data-day": last ? last.day : ""},
      el("tr", null, ...cols.map(([k]) => el("th", {text: t(k)})), el("th", {text: t("nowStatus")})),
      ...(v.nozzles || []).map((n) => {
        const r = records.get(n.id);
        const now = nowStatus(n);
        return el("tr", {"data-nozzle": n.id}, ...cols.map(([, f, field]) => el("td", {"data-field": field, text: f(n, r)})),
          el("td", null, badge("nozzle-status", now, t(`v_${now}`))));
      }));
    const caption = el("div", {class: "small muted sub", text: last ? `${t("judgedDay", {day: last.day})} (GB 20952-2020 E.3.3, §5.3)`
      : t("firstDayOpen")});
    const alerts = (v.alerts || []).slice().sort((a, b) => b.last_ts - a.last_ts);
    const alertList = alerts.length ? [el("div", {class: "small muted sub", text: t("vaporAlerts")}),
      el("ul", {class: "reasons", id: "vapor-alerts"}, ...alerts.map((a) => el("li", {class: `sev-${a.severity}`, "data-alert": a.id},
        el("b", {text: fmt.code(a.code)}), " ", el("span", {class: "muted", text: `${t(a.severity)} · ${fmt.time(a.first_ts)}`}), " ",
        el("span", {text: FT.lang() === "zh" ? a.message_zh : a.message_en}), " ", alertLink(a))))] : [];
    return [head, facts, caption, el("div", {class: "table-wrap"}, table), ...alertList];
  }

  // Daily median A/L per nozzle over the kept closed days, over the §5.3 band 1.0–1.2.
  function drawHistory(c, v) {
    const days = [...v.history].reverse();
    const ids = (v.nozzles || []).map((n) => n.id);
    c.setOption({animation: false, grid: {left: 40, right: 10, top: 10, bottom: 22},
      tooltip: {trigger: "axis", valueFormatter: (x) => x == null ? "—" : x.toFixed(3)},
      xAxis: {type: "category", data: days.map((d) => d.day.slice(5)), axisLabel: {color: "#8aa0b8", fontSize: 10},
              axisLine: {lineStyle: {color: "#2a4466"}}},
      yAxis: {type: "value", min: (r) => Math.min(0.9, Math.floor(r.min * 10) / 10), max: (r) => Math.max(1.3, Math.ceil(r.max * 10) / 10),
              axisLabel: {color: "#8aa0b8", fontSize: 10}, splitLine: {lineStyle: {color: "#1b3050"}}},
      series: ids.map((nid, i) => ({name: nid, type: "line", symbolSize: 4,
        data: days.map((d) => { const r = (d.nozzles || []).find((x) => x.nozzle === nid); return r ? r.median_a_l : null; }),
        lineStyle: {width: 1.2},
        markArea: i === 0 ? {silent: true, itemStyle: {color: "rgba(46,204,113,0.10)"}, data: [[{yAxis: 1.0}, {yAxis: 1.2}]]} : undefined}))},
      true);
  }

  function historyKey(v) {
    const h = (v && v.history) || [];
    return `${h.length}:${h.length ? h[0].day : ""}`;
  }

  // ---- safety, inspections, risk --------------------------------------------------------------------

  // Where a reason's record lives on this page (GET /risk's `source`): the vapor panel, a tank card.
  function recordTarget(src) {
    if (src.record === "vapor_daily" || src.record === "vapor") return document.getElementById("vapor-panel");
    if (src.record === "state" && src.tank) return document.getElementById(`tank-${src.tank}`);
    if (src.record === "state") return document.getElementById("tanks");
    return null;
  }

  function renderRisk(r, openAlertIds) {
    if (!r) return el("div", {class: "muted", "data-role": "risk-none", text: t("noData")});
    const zh = FT.lang() === "zh";
    const head = el("div", {class: "panel-head"},
      badge("risk-level", r.level, `${t("risk")} ${t(`r_${r.level}`)} · ${fmt.n1(r.score)}`, {"data-score": String(r.score)}),
      el("span", {class: "muted", text: t("riskReasons")}));
    const items = r.contributions.map((c) => {
      const src = c.source || {};
      let link = null;
      if (src.alert) {
        link = openAlertIds.has(src.alert) ? alertLink({id: src.alert})
          : el("span", {class: "muted", title: src.alert, text: t("closedAlert")});
      } else if (recordTarget(src)) {
        link = el("a", {href: "#", "data-record-link": src.record, text: t("viewRecord"),
                        onclick: (e) => { e.preventDefault(); jump(recordTarget(src)); }});
      }
      return el("li", {"data-kind": c.kind, "data-source-alert": src.alert || null, "data-points": String(c.points)},
        el("span", {class: "points", text: `+${fmt.n1(c.points)}`}), " ", el("span", {text: zh ? c.reason_zh : c.reason_en}),
        link ? " " : null, link);
    });
    return el("div", {id: "risk-score"}, head, items.length ? el("ul", {class: "reasons", id: "risk-reasons"}, ...items)
      : el("div", {class: "muted", text: t("noRiskReasons")}));
  }

  function renderDevices(safety) {
    const devices = Object.entries((safety && safety.devices) || {}).sort((a, b) => a[0].localeCompare(b[0]));
    if (!devices.length) return el("div", {class: "muted", "data-role": "devices-none", text: t("noDevices")});
    const reading = (d) => d.sensor === "gas_lel" && d.value != null ? `${fmt.n1(d.value)} %LEL (GB/T 50493-2019: 25 / 50)`
      : [known("st_", d.state), d.value != null ? fmt.n1(d.value) : null].filter((x) => x && x !== "—").join(" · ") || "—";
    return el("table", {class: "list", id: "safety-devices"},
      el("tr", null, ...["device", "sensor", "reading", "time"].map((k) => el("th", {text: t(k)}))),
      ...devices.map(([id, d]) => el("tr", {"data-device": id},
        el("td", {text: d.entity ? `${id} · ${d.entity}` : id}), el("td", {text: known("s_", d.sensor)}),
        el("td", {"data-field": "reading", text: reading(d) + (d.unloading ? ` · ${t("unloading")}` : "")}),
        el("td", {text: fmt.time(d.ts)}))));
  }

  // INSPECTION_FINDING alerts (open and closed): each holds the latest report that raised or updated
  // it (inspector, findings, failed checklist items); a clean report closes it.
  function renderInspections(findings, reports, openAlertIds) {
    const zh = FT.lang() === "zh";
    const out = [el("div", {class: "small muted sub", text: `${t("inspectionFindings")}`
      + (reports ? ` · ${t("reportsTotal", {n: fmt.int(reports)})}` : "")})];
    if (!findings.length) {
      out.push(el("div", {class: "muted", "data-role": "inspections-none", text: t("noInspections")}));
      return out;
    }
    out.push(el("ul", {class: "reasons", id: "inspections"}, ...findings.map((a) => {
      const ev = a.evidence || {};
      const who = String(ev.inspector || "").replace(/^handheld:/, "");
      const list = (ev.findings || []).filter((f) => !String(f).startsWith("未通过 / failed:"));
      return el("li", {class: `sev-${a.severity}`, "data-alert": a.id, "data-status": a.status},
        el("div", null, el("b", {text: fmt.time(ev.ts ?? a.last_ts)}), " ",
          el("span", {class: "status-pill", text: t(a.status)}), " ",
          el("span", {class: "muted", text: `${t("inspector")} ${who || "—"} · ${known("rs_", ev.report_severity)}`}), " ",
          openAlertIds.has(a.id) ? alertLink(a) : null),
        list.length ? el("div", {"data-field": "findings", text: list.join("；")}) : null,
        (ev.failed_checks || []).length ? el("div", {class: "small", "data-field": "failed",
          text: `${t("failedChecks")}: ${ev.failed_checks.join("、")}`}) : null,
        !list.length && !(ev.failed_checks || []).length ? el("div", {text: zh ? a.message_zh : a.message_en}) : null);
    })));
    return out;
  }

  function renderSafety(root, {risk, safety, findings, openAlertIds}) {
    root.replaceChildren(renderRisk(risk, openAlertIds),
      el("div", {class: "small muted sub", text: t("devices")}), renderDevices(safety),
      ...renderInspections(findings || [], safety ? safety.reports : 0, openAlertIds));
  }

  return {VAPOR_CODES, vaporFromState, renderVapor, renderSafety, resize: () => chart && chart.resize(),
          vaporChart: () => chart};
})();
