// An alert's evidence and metrics as a regulator reads them: each field by name in the reader's language
// with its unit, times in Beijing time, intervals as ranges, lists of drops or fills as small tables —
// not the detector's JSON. Every detector writes its own fields (twin/detectors, twin/vapor.py,
// twin/safety.py, twin/regulatory.py); a field without a label here keeps its own name and a unit read
// from its suffix (_l litres, _ts a time, _pct %, …), so a new one is shown, never hidden. The raw JSON
// stays one click further for a researcher.
"use strict";

const FTEvidence = (() => {
  const {t, fmt, el} = FT;

  // field -> [zh, en]; the unit comes from the suffix (UNITS) unless the label has its own
  const LABELS = {
    volume_l: ["油量", "Volume"], start_ts: ["开始", "Start"], end_ts: ["结束", "End"],
    baseline_l: ["之前差值", "Divergence before"], after_l: ["之后差值", "Divergence after"],
    no_transaction_in_window: ["期间无交易", "No transaction meanwhile"], minutes: ["历时（分钟）", "Minutes"],
    vapor_fills_without_transaction: ["油气监测到的无交易加油", "Monitor fills without a transaction"],
    drops: ["各段", "Drops"], unrecorded_drops: ["未记录的下降", "Unrecorded drops"], litres: ["升数", "Litres"],
    how: ["判定方式", "How"], se_l: ["标准误差", "Standard error"], continues: ["后续更新", "Follow-up"],
    settled: ["液位稳定后复核", "Read again once settled"], rate_lph: ["渗漏速率", "Leak rate"],
    ci95_lph: ["95% 区间", "95 % interval"], ci95: ["95% 区间", "95 % interval"], ci95_l: ["95% 区间", "95 % interval"],
    days_of_data: ["数据天数", "Days of data"], onset_ts: ["起始时间", "Onset"],
    divergence_trend_lph: ["差值趋势", "Divergence trend"], candidates: ["候选油枪", "Candidate nozzles"],
    candidate_nozzles: ["候选油枪数", "Candidate nozzles"], best_nozzle: ["最可能的油枪", "Most likely nozzle"],
    bias_pct: ["计量偏差", "Meter bias"], factor: ["系数", "Factor"], factor_change: ["系数变化", "Factor change"],
    sold_l: ["销量", "Sold"], litres_affected: ["涉及油量", "Litres affected"], from_hour: ["起始时", "From hour"],
    to_hour: ["截止时", "To hour"], chi2_vs_none: ["Δχ²（对无变化）", "Δχ² vs none"],
    chi2_vs_trend: ["Δχ²（对趋势）", "Δχ² vs trend"], chi2_behind_best: ["Δχ²（落后最佳）", "Δχ² behind best"],
    totalizer_l: ["累计数", "Totalizer"], expected_totalizer_l: ["应有累计数", "Expected totalizer"],
    excess_l: ["差额", "Difference"], txn_no: ["流水号", "Transaction no."], last_txn_no: ["上一流水号", "Previous no."],
    missing: ["缺失笔数", "Missing"], missing_from: ["缺失起", "Missing from"], missing_to: ["缺失止", "Missing to"],
    old_mainboard_id: ["原主板", "Old board"], new_mainboard_id: ["新主板", "New board"], old: ["原值", "Old"],
    new: ["新值", "New"], firmware: ["固件", "Firmware"], mainboard_id: ["主板", "Board"],
    since_ts: ["开始于", "Since"], level_mm: ["液位", "Level"], water_mm: ["水位", "Water"], limit_mm: ["限值", "Limit"],
    mm_per_day: ["漂移", "Drift"], gross_l: ["毛体积", "Gross volume"], safe_l: ["安全容量", "Safe volume"],
    fill_pct: ["充装率", "Fill"], last_seen_ts: ["最后数据", "Last seen"], net_l_20c: ["净量（20 °C）", "Net at 20 °C"],
    net_l: ["净量", "Net"], po_no: ["采购单号", "PO no."], invoice_no: ["发票号", "Invoice no."], grade: ["油品", "Grade"],
    tank: ["油罐", "Tank"], nozzle: ["油枪", "Nozzle"], station: ["油站", "Station"], day: ["日期", "Day"],
    a_l: ["A/L", "A/L"], median_a_l: ["A/L 中位数", "Median A/L"], last_a_l: ["最新 A/L", "Latest A/L"],
    valid_fills: ["有效加油次数", "Valid fills"], fills_judged: ["判定加油次数", "Fills judged"],
    share_in_range: ["达标占比", "Share in range"], consecutive_warning_days: ["连续预警天数", "Warning days in a row"],
    pressure_pa: ["压力", "Pressure"], umol_per_mol: ["浓度", "Concentration"], reason: ["原因", "Reason"],
    declared_l: ["申报量", "Declared"], measured_l: ["实测量", "Measured"], metered_l: ["计量量", "Metered"],
    invoiced_l: ["发票量", "Invoiced"], variance_pct: ["差异", "Variance"], variance_l: ["差异", "Variance"],
    unit_price: ["单价", "Unit price"], reference_price: ["参考价", "Reference price"], price: ["价格", "Price"],
    cost: ["成本", "Cost"], declared_capacity_l: ["申报罐容", "Declared capacity"],
    chart_capacity_l: ["罐表容量", "Chart capacity"], findings: ["发现问题", "Findings"], inspector: ["检查人", "Inspector"],
    failed_checks: ["未通过项", "Failed checks"], lel_pct: ["可燃气体浓度", "Combustible gas"], device: ["设备", "Device"],
    sensor: ["传感器", "Sensor"], count: ["次数", "Count"], days: ["天数", "Days"], hours: ["小时", "Hours"],
    window_h: ["窗口", "Window"], fraction: ["比例", "Fraction"], share_pct: ["占比", "Share"],
    unreported_fills: ["未上报加油", "Unreported fills"], unreported_l: ["未上报油量", "Unreported litres"],
    reported_l: ["上报油量", "Reported litres"], nozzles: ["油枪", "Nozzles"], events: ["事件数", "Events"],
    leak_rate_lph: ["渗漏速率", "Leak rate"], leak_rate_se_lph: ["渗漏速率标准误", "Leak rate s.e."],
    samples: ["样本数", "Samples"], status: ["状态", "Status"], state: ["状态", "State"], value: ["数值", "Value"],
    ts: ["时间", "Time"], lot: ["批次", "Lot"], lots: ["批次", "Lots"], direction: ["方向", "Direction"],
    booked_ts: ["入账时间", "Booked"], blind_s: ["盲区", "Blind time"], delivered_l_20c: ["收油量（20 °C）", "Delivered at 20 °C"],
    voc_umol_mol: ["VOC 浓度", "VOC"], processor_state: ["后处理装置", "Processing unit"],
    outlet_max_hourly_g_m3: ["排放浓度（最大小时均值）", "Outlet (max. hourly)"], id: ["编号", "Id"],
  };
  // the few values a detector writes as words (its `how`)
  const WORDS = {"step between two quiet hours": ["两段平稳时段之间的阶跃", "step between two quiet hours"],
                 "meter change since an onset": ["自某时起的计量变化", "meter change since an onset"]};
  // by suffix, the longest first
  const UNITS = [["_l_20c", "L"], ["_lph", "L/h"], ["_pct", "%"], ["_mm", "mm"], ["_pa", "Pa"], ["_g_m3", "g/m³"],
                 ["_umol_mol", "µmol/mol"], ["_h", "h"], ["_s", "s"], ["_l", "L"], ["_cny", "¥"]];
  const zh = () => FT.lang() === "zh";

  function unit(key) {
    const hit = UNITS.find(([suffix]) => key.endsWith(suffix));
    return hit ? hit[1] : (key === "mm_per_day" ? (zh() ? "mm/天" : "mm/day") : "");
  }
  function label(key) {
    const known = LABELS[key];
    const name = known ? known[zh() ? 0 : 1] : key;
    const u = unit(key);
    return u && !name.includes(u) ? `${name} (${u})` : name;
  }
  const isTime = (key) => key.endsWith("_ts") || key === "ts";

  function number(v) {
    const digits = Math.abs(v) >= 100 ? 1 : Math.abs(v) >= 1 ? 2 : 4;
    return v.toLocaleString(zh() ? "zh-CN" : "en-US", {maximumFractionDigits: digits});
  }

  function scalar(key, v) {
    if (v == null) return "—";
    if (typeof v === "boolean") return zh() ? (v ? "是" : "否") : (v ? "yes" : "no");
    if (typeof v === "number") return isTime(key) ? fmt.time(v) : number(v);
    return WORDS[v] ? WORDS[v][zh() ? 0 : 1] : String(v);
  }

  // a value as a DOM node: scalars as text, intervals as a range, lists of records as a table
  function value(key, v) {
    if (Array.isArray(v)) {
      if (v.length === 2 && v.every((x) => typeof x === "number") && /ci95/.test(key)) {
        return document.createTextNode(`${number(v[0])} – ${number(v[1])}`);
      }
      if (v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) return table(v);
      return document.createTextNode(v.length ? v.map((x) => scalar(key, x)).join(zh() ? "、" : ", ") : "—");
    }
    if (v && typeof v === "object") return list(v);
    return document.createTextNode(scalar(key, v));
  }

  const SHOWN_ROWS = 20;
  function table(rows) {
    const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))].filter((c) => !skipped(c));
    const body = rows.slice(0, SHOWN_ROWS).map((r) => el("tr", null, ...cols.map((c) => el("td", null, value(c, r[c])))));
    const more = rows.length > SHOWN_ROWS ? [el("tr", null, el("td", {colspan: String(cols.length), class: "muted",
      text: zh() ? `…共 ${rows.length} 项` : `… ${rows.length} in all`}))] : [];
    return el("table", {class: "list evidence-table"}, el("tr", null, ...cols.map((c) => el("th", {text: label(c)}))), ...body, ...more);
  }

  // a `rule_zh` / `rule_en` pair shows once, in the reader's language, under `rule`
  const skipped = (key) => key.endsWith(zh() ? "_en" : "_zh");
  const named = (key) => key.replace(/_(zh|en)$/, "");

  function list(obj) {
    const rows = Object.entries(obj).filter(([k]) => !skipped(k));
    return el("dl", {class: "evidence"}, ...rows.flatMap(([k, v]) => [
      el("dt", {text: label(named(k)), title: k}), el("dd", {"data-field": k}, value(k, v))]));
  }

  // The alert's evidence, then its metrics where they say more than the evidence, then the raw JSON.
  function render(alert) {
    const evidence = alert.evidence || {};
    const metrics = Object.fromEntries(Object.entries(alert.metrics || {}).filter(([k]) => !(k in evidence)));
    return el("div", {class: "evidence-view"}, list(evidence),
      Object.keys(metrics).length ? el("div", {class: "small muted", text: zh() ? "指标" : "Metrics"}) : null,
      Object.keys(metrics).length ? list(metrics) : null,
      el("details", {class: "small"}, el("summary", {text: zh() ? "原始数据（JSON）" : "Raw data (JSON)"}),
        el("pre", {text: JSON.stringify({evidence: alert.evidence, metrics: alert.metrics, history: alert.history}, null, 1)})));
  }

  return {render, label};
})();
