// The station twin: every tank as a gauge (observed vs book volume, water, temperature) with its
// divergence over 24 h or 7 d and the leak-rate estimate; nozzles live; transactions; deliveries with their
// purchase orders and lot trace; the 进销存 ledger; alerts with evidence and acknowledge / close; the
// vapor-recovery and safety / inspection / risk panels (station_panels.js) when those APIs exist. Live from
// the websocket filtered to this station.
"use strict";

(() => {
  const {t, fmt, el, getJSON, postJSON} = FT;
  const id = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const api = `/api/v1/stations/${encodeURIComponent(id)}`;
  const model = {spec: null, state: null, alerts: new Map(), windowS: 86400, ledger: "day", div: {}, deliveries: [],
                 vapor: null, risk: null, findings: [], safety: null};
  const gauges = {};
  const divCharts = {};
  let dirty = true;

  FT.header("station");
  document.title = `${t("station")} ${id}`;
  const who = document.getElementById("who");
  who.value = localStorage.getItem("fueltwin.who") || "";
  who.addEventListener("change", () => localStorage.setItem("fueltwin.who", who.value.trim()));

  async function loadTwin() {
    const twin = await getJSON(api);
    if (!twin) return;
    model.spec = twin;
    // The websocket's first state may have come meanwhile: it is the fresher one (and it carries the
    // vapor and safety parts the REST view leaves out).
    if (!model.live) {
      model.state = {tanks: twin.tanks, nozzles: twin.nozzles, recent_transactions: twin.recent_transactions,
                     watermark: twin.watermark, events: twin.events, online: twin.online};
    }
    model.alerts.clear();
    for (const a of twin.alerts) model.alerts.set(a.id, a);
    dirty = true;
    render();
    loadDivergence();
  }

  async function loadDivergence() {
    const until = model.state && model.state.watermark;
    if (!until) return;
    const d = await getJSON(`${api}/divergence?since=${until - model.windowS}&max_points=300`);
    if (!d) return;
    for (const s of d.series) model.div[s.tank] = s;
    renderDivergence();
  }

  function onMessage(m) {
    if (m.type === "hello") { FT.setMode(m.mode); return; }
    if (m.station !== id) return;
    if (m.type === "state") {
      const tanks = m.tanks || [];
      model.state = {...m, online: tanks.some((x) => x.last_ts != null) && !tanks.some((x) => x.stale)};
      model.live = true;
      dirty = true;
    } else if (m.type === "alert") {
      if (m.status === "closed") model.alerts.delete(m.id); else model.alerts.set(m.id, m);
      renderAlerts();
      if (model.vapor && FTPanels.VAPOR_CODES.has(m.code)) {
        model.vapor = {...model.vapor, alerts: [...model.alerts.values()].filter((a) => FTPanels.VAPOR_CODES.has(a.code))};
        renderVapor();
      }
      soon(loadSafety);  // the risk score and the inspection findings follow the alerts
    } else if (m.type === "delivery") {
      loadDeliveries();
    } else if (m.type === "divergence") {
      const s = model.div[m.tank];
      if (s) {
        s.ts.push(m.ts); s.divergence_l.push(m.divergence_l);
        s.leak_rate_lph = m.leak_rate_lph; s.leak_rate_se_lph = m.leak_rate_se_lph;
        while (s.ts.length && s.ts[0] < m.ts - model.windowS) { s.ts.shift(); s.divergence_l.shift(); }
        if (s.ts.length > 600) { s.ts.splice(0, s.ts.length - 600); s.divergence_l.splice(0, s.divergence_l.length - 600); }
      }
    }
  }

  // ---- tanks -----------------------------------------------------------------------------------

  function tankCard(tank) {
    let card = document.getElementById(`tank-${tank.id}`);
    if (card) return card;
    card = el("div", {class: "tank-card", id: `tank-${tank.id}`},
      el("h2", null, el("span", {text: `${tank.id} · ${tank.grade}`}), el("span", {class: "muted small", "data-role": "flags"})),
      el("div", {class: "gauge", id: `gauge-${tank.id}`}),
      el("dl", {class: "facts", "data-role": "facts"}),
      el("div", {class: "div-chart", id: `div-${tank.id}`}));
    document.getElementById("tanks").append(card);
    gauges[tank.id] = echarts.init(card.querySelector(".gauge"));
    divCharts[tank.id] = echarts.init(card.querySelector(".div-chart"));
    return card;
  }

  function renderTanks() {
    const b = parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;
    for (const tank of model.state.tanks) {
      const card = tankCard(tank);
      const cap = tank.declared_capacity_l;
      const pct = (v) => v == null ? null : +(100 * v / cap).toFixed(1);
      gauges[tank.id].setOption({animation: false, series: [{type: "gauge", min: 0, max: 100, startAngle: 210, endAngle: -30,
        radius: "95%", progress: {show: true, width: b * 0.6}, axisLine: {lineStyle: {width: b * 0.6, color: [[1, "#1b3050"]]}},
        axisTick: {show: false}, splitLine: {length: b * 0.4, lineStyle: {color: "#3a5a80"}},
        axisLabel: {color: "#8aa0b8", fontSize: b * 0.6, distance: b * 0.9}, pointer: {show: true, width: b * 0.2},
        itemStyle: {color: tank.stale ? "#6b7a90" : "#3aa0ff"},
        detail: {formatter: () => fmt.litres(tank.observed_l), color: "#dfe9f5", fontSize: b * 1.0, offsetCenter: [0, "60%"]},
        title: {show: true, offsetCenter: [0, "85%"], color: "#8aa0b8", fontSize: b * 0.7},
        data: [{value: pct(tank.observed_l), name: `${t("expected")} ${fmt.litres(tank.expected_l)}`}],
        markLine: undefined}]});
      const facts = [[t("observed"), fmt.litres(tank.observed_l)], [t("expected"), fmt.litres(tank.expected_l)],
        [t("divergence"), `${fmt.signed(tank.divergence_l, 1)} L`], [t("water"), `${fmt.n1(tank.water_mm)} mm`],
        [t("temp"), `${fmt.n1(tank.temp_c)} °C`],
        [t("leakRate"), tank.leak_rate_lph == null ? "—" : `${fmt.signed(tank.leak_rate_lph, 2)} ± ${fmt.n2(tank.leak_rate_se_lph)} L/h`],
        [t("capacity"), fmt.litres(cap)], [t("dataTime"), fmt.time(tank.last_ts)]];
      card.querySelector("[data-role=facts]").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {text: k}), el("dd", {text: v})]));
      card.querySelector("[data-role=flags]").textContent = tank.stale ? t("stale") : tank.delivering ? t("deliveries") : "";
    }
  }

  // While a drop is under way the books do not know of it yet: the divergence climbs by the litres
  // dropped and falls back at the reading that books the delivery (its booked_ts), once the level has
  // been flat for the delivery detector's settle window. Those points say nothing about losses and would
  // set the chart's scale for a day (a 20,000 L spike over ±20 L of noise), so the chart leaves them out
  // and shades the drop instead; the delivery itself is in the deliveries table. A record stored before
  // booked_ts existed is taken as booked a settle window (10 min) and a reading after its end.
  const OLD_RECORD_SETTLE_S = 660;

  function dropBands(tank) {
    return model.deliveries.filter((d) => d.tank === tank && d.start_ts != null && d.end_ts != null)
      .map((d) => [d.start_ts, d.booked_ts ?? d.end_ts + OLD_RECORD_SETTLE_S]);
  }

  function renderDivergence() {
    for (const [tank, s] of Object.entries(model.div)) {
      const c = divCharts[tank];
      if (!c) continue;
      const bands = dropBands(tank);
      const inDrop = (ts) => bands.some(([a, b]) => ts >= a && ts < b);
      c.setOption({grid: {left: 40, right: 8, top: 26, bottom: 18}, tooltip: {trigger: "axis"},
        title: {text: `${t("divergence")} L` + (s.leak_rate_lph == null ? "" : ` · ${t("leakRate")} ${fmt.signed(s.leak_rate_lph, 2)} L/h`),
                textStyle: {color: "#8aa0b8", fontSize: 11, fontWeight: "normal"}, left: 0, top: 0},
        xAxis: {type: "time", splitNumber: 4,
                axisLabel: {color: "#8aa0b8", fontSize: 10, hideOverlap: true,
                            // over 7 days the hour alone is ambiguous: the day goes with it
                            formatter: (v) => fmt.time(v / 1000).slice(model.windowS > 86400 ? 0 : -8, -3)},
                axisLine: {lineStyle: {color: "#2a4466"}}},
        yAxis: {type: "value", scale: true, axisLabel: {color: "#8aa0b8", fontSize: 10}, splitLine: {lineStyle: {color: "#1b3050"}}},
        series: [{type: "line", symbol: "none", data: s.ts.map((x, i) => [x * 1000, inDrop(x) ? null : s.divergence_l[i]]),
                  lineStyle: {color: "#f1c40f", width: 1.5}, areaStyle: {color: "rgba(241,196,15,0.08)"},
                  markArea: {silent: true, itemStyle: {color: "rgba(52,152,219,0.18)"},
                             label: {color: "#8aa0b8", fontSize: 10, position: "insideTop"},
                             data: bands.map(([a, b]) => [{xAxis: a * 1000, name: t("dropBand")}, {xAxis: b * 1000}])}}]});
    }
  }

  // ---- nozzles, transactions -------------------------------------------------------------------

  // The nozzle's meter factor (delivered / displayed) from its tank's latest wetstock fit, ± the half-width
  // of its 95 % interval; where the fit cannot tell the meter from the tank's chart (fewer than 3 nozzles
  // with enough sales), from too few sales, or while the tank trends, it says so instead of a number.
  function meterLine(n) {
    const tank = model.state.tanks.find((x) => x.id === n.tank);
    const mf = tank && tank.meter_factors ? tank.meter_factors[n.id] : undefined;
    if (!mf) {
      return el("div", {class: "small muted", "data-role": "meter", "data-judged": "none",
                        text: `${t("meterFactor")} — ${t(tank && tank.meter_factors ? "meterNoFit" : "meterAwaitFit")}`});
    }
    const detail = `${t("sold")} ${fmt.int(mf.sold_l)} L · 95 %: ${mf.ci95[0].toFixed(4)} – ${mf.ci95[1].toFixed(4)}`;
    if (!mf.judged) {
      return el("div", {class: "small muted", "data-role": "meter", "data-judged": "false", "data-reason": mf.reason,
                        title: detail, text: `${t("meterFactor")}: ${t(`meter_${mf.reason}`)}`});
    }
    const half = (mf.ci95[1] - mf.ci95[0]) / 2;
    return el("div", {class: "small", "data-role": "meter", "data-judged": "true", title: detail,
                      text: `${t("meterFactor")} ${mf.factor.toFixed(4)} ±${half.toFixed(4)}`});
  }

  function renderNozzles() {
    document.getElementById("nozzles").replaceChildren(...model.state.nozzles.map((n) => {
      const cls = n.stale ? "stale" : n.state || "idle";
      const busy = n.state === "fuelling" || n.state === "finished";
      return el("div", {class: `nozzle ${cls}`, "data-nozzle": n.id},
        el("div", null, el("b", {text: `${n.id} · ${n.grade}`}), " ", el("span", {class: "muted small", text: `${n.tank}`})),
        el("div", {class: "big", text: busy ? `${fmt.n2(n.running_l)} L` : t(n.stale ? "stale" : n.state || "idle")}),
        el("div", {class: "small muted", text: busy ? fmt.money(n.running_cny) : `${t("txnNo")} ${n.last_txn_no ?? "—"}`}),
        meterLine(n));
    }));
  }

  // Issue 5's trace API (GET /trace/po/{po}, /trace/lot/{lot}, /trace/txn/{station}/{no}): links only
  // where this server has it.
  let traceTxn = false, tracePo = false, traceLot = false;
  const traceCheck = Promise.all([FT.has("/api/v1/trace/txn/{station_id}/{txn_no}"), FT.has("/api/v1/trace/po/{po_no}"),
    FT.has("/api/v1/trace/lot/{lot}")]).then(([a, b, c]) => { traceTxn = a; tracePo = b; traceLot = c; });
  const pathOf = (s) => s.split("/").map(encodeURIComponent).join("/");
  let traceShown = null;  // [kind, key] of the trace on screen (redrawn on a language switch)

  function link(text, onclick, attrs) {
    return el("a", {href: "#", text, ...attrs, onclick: (e) => { e.preventDefault(); onclick(); }});
  }
  const pct = (v) => v == null ? "—" : `${fmt.n1(100 * v)} %`;
  function table(cols, rows) {
    return el("table", {class: "list"}, el("tr", null, ...cols.map(([k]) => el("th", {text: t(k)}))),
      ...rows.map((r) => el("tr", null, ...cols.map(([k, f]) => el("td", {"data-field": k, text: f(r)})))));
  }
  function facts(pairs) {
    return el("dl", {class: "facts trace-facts"}, ...pairs.flatMap(([k, v, field]) =>
      [el("dt", {text: t(k)}), el("dd", {"data-field": field || k, text: v == null || v === "" ? "—" : String(v)})]));
  }

  const traceViews = {
    po: (d) => [
      el("h3", null, `${t("po")} `, el("span", {"data-field": "po_no", text: d.po_no})),
      facts([["supplier", d.source.supplier], ["depot", d.source.depot], ["grade", d.source.grade],
             ["volumeDoc", fmt.int(d.source.volume_l_20c), "volume_l_20c"], ["invoice", d.source.invoice_no, "invoice_no"],
             ["vehicle", d.transport.vehicle], ["seals", (d.transport.seals || []).join("、"), "seals"],
             ["arrive", fmt.time(d.transport.arrive_ts), "arrive_ts"],
             ["detected", fmt.int(d.detected_l_20c), "detected_l_20c"], ["drawn", fmt.int(d.sales.drawn_l_20c), "drawn_l_20c"]]),
      d.deliveries.length ? lotTable(d.deliveries) : el("div", {class: "muted", text: t("notMatched")})],
    lot: (d) => [
      el("h3", null, `${t("lot")} `, el("span", {"data-field": "lot", text: d.lot})),
      facts([["tank", d.tank], ["po", d.po_no || t("noPo"), "po_no"], ["start", fmt.time(d.start_ts), "start_ts"],
             ["end", fmt.time(d.end_ts), "end_ts"]]),
      lotTable([d]),
      table([["date", (r) => r[0]], ["drawn", (r) => fmt.n1(r[1])]], Object.entries(d.sales.by_day).reverse())],
    txn: (d) => [
      el("h3", null, `${t("txnNo")} `, el("span", {"data-field": "txn_no", text: String(d.txn_no)})),
      facts([["nozzle", d.nozzle], ["tank", d.tank], ["end", fmt.time(d.end_ts), "end_ts"],
             ["litres", fmt.n2(d.volume_l), "volume_l"], ["net20", fmt.n2(d.volume_l_20c), "volume_l_20c"]]),
      table([["lot", (x) => x.lot], ["share", (x) => pct(x.share)], ["net20", (x) => fmt.n2(x.litres_20c)],
             ["po", (x) => x.po_no || "—"], ["end", (x) => fmt.time(x.delivered_ts)]], d.lots)],
  };
  function lotTable(lots) {
    return table([["lot", (x) => x.lot], ["tank", (x) => x.tank], ["detected", (x) => fmt.int(x.detected_net_l_20c)],
      ["drawn", (x) => fmt.int(x.drawn_l_20c)], ["txns", (x) => fmt.int(x.transactions)],
      ["shareNow", (x) => pct(x.share_of_tank_now)], ["remaining", (x) => fmt.int(x.remaining_l_20c)]], lots);
  }
  const traceUrls = {
    po: (key) => `/api/v1/trace/po/${pathOf(key)}`,
    lot: (key) => `/api/v1/trace/lot/${pathOf(key)}`,
    txn: ([no, nozzle]) => `/api/v1/trace/txn/${encodeURIComponent(id)}/${no}?nozzle=${encodeURIComponent(nozzle)}`,
  };

  async function showTrace(kind, key) {
    traceShown = [kind, key];
    const out = document.getElementById("trace");
    const d = await getJSON(traceUrls[kind](key));
    out.hidden = false;
    out.dataset.kind = kind;
    out.dataset.key = Array.isArray(key) ? key.join("|") : key;
    const close = el("button", {type: "button", class: "trace-close", text: "×",
                                onclick: () => { out.hidden = true; traceShown = null; }});
    out.replaceChildren(close, ...(d ? traceViews[kind](d) : [el("div", {class: "muted", text: t("noData")})]));
  }

  function renderTxns() {
    const rows = (model.state.recent_transactions || []).slice(0, 50);
    const head = el("tr", null, ...["time", "nozzle", "grade", "litres", "price", "amount", "txnNo"].map((k) => el("th", {text: t(k)})));
    document.getElementById("txns").replaceChildren(head, ...rows.map((x) => el("tr", null,
      el("td", {text: fmt.time(x.end_ts)}), el("td", {text: x.nozzle}), el("td", {text: x.grade}),
      el("td", {text: fmt.n2(x.volume_l)}), el("td", {text: fmt.n2(x.unit_price)}), el("td", {text: fmt.n2(x.amount_cny)}),
      el("td", null, traceTxn ? link(String(x.txn_no), () => showTrace("txn", [x.txn_no, x.nozzle])) : String(x.txn_no)))));
  }

  // Deliveries (GET /deliveries: net L at 20 °C, the lot, and the purchase order matched to the lot, also
  // one matched after the drop); the order opens its trace, the lot its own (an undocumented drop's too).
  async function loadDeliveries() {
    const list = await getJSON(`/api/v1/deliveries?station=${encodeURIComponent(id)}&limit=50`) || [];
    model.deliveries = list;
    renderDivergence();
    const head = el("tr", null, ...["tank", "start", "end", "net20", "po", "lot"].map((k) => el("th", {text: t(k)})));
    document.getElementById("deliveries").replaceChildren(head, ...(list.length ? list.map((d) => {
      const po = d.po_no || null;
      return el("tr", {"data-lot": d.lot || "", "data-po": po || ""},
        el("td", {text: d.tank}), el("td", {text: fmt.time(d.start_ts)}), el("td", {text: fmt.time(d.end_ts)}),
        el("td", {text: fmt.int(d.net_l_20c)}),
        el("td", {"data-field": "po"}, po && tracePo ? link(po, () => showTrace("po", po)) : po || "—"),
        el("td", {"data-field": "lot"}, d.lot && traceLot ? link(t("trace"), () => showTrace("lot", d.lot)) : "—"));
    }) : [el("tr", null, el("td", {colspan: "6", class: "muted", text: t("noData")}))]));
  }

  // ---- ledger, vapor, risk (later issues' APIs: hidden when absent) --------------------------------

  async function loadLedger() {
    const panel = document.getElementById("ledger-panel");
    if (!(await FT.has("/api/v1/stations/{station_id}/ledger"))) {
      document.getElementById("ledger").replaceChildren(el("tr", null, el("td", {class: "muted", text: `${t("noData")} (${t("notAvailable")})`})));
      panel.dataset.available = "no";
      return;
    }
    panel.dataset.available = "yes";
    const period = model.ledger;
    const d = await getJSON(`${api}/ledger?period=${period}`);
    if (period !== model.ledger) return;  // switched again meanwhile
    // The station's rows (GET /stations/{id}/ledger: station_total, oldest first), newest first. Litres at
    // 20 °C except metered sales (displayed litres); the current period's row is still open.
    const rows = (d && (d.station_total || [])) || [];
    const cols = [["key", "key"], ["opening", "opening_measured_l"], ["receiptsDoc", "receipts_documented_l"],
      ["receiptsDet", "receipts_detected_l"], ["receiptsUndoc", "receipts_undocumented_l"], ["sales", "sales_metered_l"], ["closingBook", "closing_book_l"],
      ["closingMeas", "closing_measured_l"], ["variance", "variance_l"], ["variancePct", "variance_pct"]];
    const cell = (r, f) => f === "key" ? r.key + (r.complete ? "" : ` (${t("partial")})`)
      : f === "variance_pct" ? (r[f] == null ? "—" : `${fmt.signed(r[f], 2)} %`) : fmt.int(r[f]);
    const out = document.getElementById("ledger");
    out.dataset.period = period;
    out.replaceChildren(el("tr", null, ...cols.map(([k]) => el("th", {text: t(k)}))),
      ...(rows.length ? rows.slice(-31).reverse().map((r) => el("tr", {"data-key": r.key}, ...cols.map(([, f]) =>
        el("td", {"data-field": f, text: cell(r, f)}))))
        : [el("tr", null, el("td", {colspan: String(cols.length), class: "muted", text: t("noData")}))]));
  }

  // Vapor recovery (GET /stations/{id}/vapor) and safety / inspections / risk (GET /risk?station=, the
  // station's INSPECTION_FINDING alerts, the live state's safety devices): read on load and every minute,
  // the risk again a few seconds after an alert of the station changes; between reads the vapor figures
  // and the devices follow the live state messages (render). Hidden where this server lacks the API.
  const hasVapor = FT.has("/api/v1/stations/{station_id}/vapor");
  const hasRisk = FT.has("/api/v1/risk");
  let shownVapor = "", shownSafety = "";

  async function loadVapor() {
    if (!(await hasVapor)) return;
    const v = await getJSON(`${api}/vapor`);
    if (!v) return;
    model.vapor = v;
    renderVapor();
  }

  async function loadSafety() {
    if (!(await hasRisk)) return;
    const [r, list] = await Promise.all([getJSON(`/api/v1/risk?station=${encodeURIComponent(id)}`),
      getJSON(`/api/v1/alerts?station=${encodeURIComponent(id)}&limit=500`)]);
    model.risk = (Array.isArray(r) && r.find((x) => x.station === id)) || null;
    if (Array.isArray(list)) model.findings = list.filter((a) => a.code === "INSPECTION_FINDING");
    renderSafety(true);
  }

  // Run `f` once, a few seconds from the first call: a burst of alerts costs one read.
  const pending = new Set();
  function soon(f, ms = 3000) {
    if (pending.has(f)) return;
    pending.add(f);
    setTimeout(() => { pending.delete(f); f(); }, ms);
  }

  function renderVapor(force) {
    if (!model.vapor && !force) return;
    const v = model.vapor;
    const h = (v && v.history) || [];
    const sig = JSON.stringify([v && [v.status, v.clock, v.today, v.pressure_pa, v.processor_state, v.voc_umol_mol,
      v.nozzles, h.length, h.length ? h[0].day : null, (v.alerts || []).map((a) => [a.id, a.status, a.last_ts, a.severity])],
      FT.lang()]);
    if (sig === shownVapor && !force) return;
    shownVapor = sig;
    document.getElementById("vapor-panel").hidden = false;
    FTPanels.renderVapor(document.getElementById("vapor"), v);
  }

  function renderSafety(force) {
    const sig = JSON.stringify([model.safety, FT.lang()]);
    if (sig === shownSafety && !force) return;
    shownSafety = sig;
    hasRisk.then((yes) => {
      if (!yes) return;
      document.getElementById("risk-panel").hidden = false;
      FTPanels.renderSafety(document.getElementById("risk"), {risk: model.risk, safety: model.safety,
        findings: model.findings, openAlertIds: new Set(model.alerts.keys())});
    });
  }

  // The live state carries the station's vapor view and safety devices (twin/vapor.py, twin/safety.py).
  function renderPanelsLive() {
    if ("vapor" in model.state) {
      hasVapor.then((yes) => {
        if (!yes) return;
        model.vapor = FTPanels.vaporFromState(model.state.vapor, model.alerts.values()) || model.vapor
          || {status: "no_data", clock: null, nozzles: [], history: [], alerts: []};
        renderVapor();
      });
    }
    if ("safety" in model.state) {
      model.safety = model.state.safety;
      renderSafety();
    }
  }

  // ---- alerts ----------------------------------------------------------------------------------

  async function act(alert, action) {
    const by = who.value.trim();
    if (!by) { who.focus(); who.classList.add("bad"); return; }
    localStorage.setItem("fueltwin.who", by);
    try {
      const updated = await postJSON(`/api/v1/alerts/${alert.id.split("/").map(encodeURIComponent).join("/")}/${action}`, {by});
      if (updated.status === "closed") model.alerts.delete(updated.id); else model.alerts.set(updated.id, updated);
      renderAlerts();
    } catch (e) {
      alert.error = t("failed") + e.message;
      renderAlerts();
    }
  }

  // the alerts whose evidence a reader opened: kept open when the list redraws (an alert updated live)
  const openEvidence = new Set();

  function renderAlerts() {
    const zh = FT.lang() === "zh";
    const list = [...model.alerts.values()].sort((a, b) => b.last_ts - a.last_ts);
    document.getElementById("alerts").replaceChildren(...(list.length ? list.map((a) => el("div",
      {class: `alert-item sev-${a.severity}`, "data-alert": a.id},
      el("div", null, el("b", {text: fmt.code(a.code)}), " ", el("span", {class: "status-pill", text: t(a.status)}), " ",
         el("span", {class: "muted small", text: `${t(a.severity)} · ${a.entity} · ${fmt.time(a.first_ts)} – ${fmt.time(a.last_ts)}`})),
      el("div", {text: zh ? a.message_zh : a.message_en}),
      el("details", {"data-evidence": a.id, open: openEvidence.has(a.id) ? "" : null,
                     ontoggle: (e) => { if (e.target.open) openEvidence.add(a.id); else openEvidence.delete(a.id); }},
         el("summary", {class: "small", text: t("evidence")}), FTEvidence.render(a)),
      el("div", {class: "actions"},
        a.status === "open" ? el("button", {type: "button", "data-action": "ack", text: t("ack"), onclick: () => act(a, "ack")}) : null,
        el("button", {type: "button", "data-action": "close", text: t("close"), onclick: () => act(a, "close")}),
        a.error ? el("span", {class: "bad small", text: a.error}) : null)))
      : [el("div", {class: "muted", text: t("noAlerts")})]));
  }

  // ---- page ------------------------------------------------------------------------------------

  function render() {
    if (!dirty || !model.state || !model.spec) return;
    dirty = false;
    const s = model.spec;
    document.getElementById("st-name").textContent = s.name;
    document.getElementById("st-id").textContent = `${s.id} · ${s.region}`;
    const on = document.getElementById("st-online");
    on.textContent = t(model.state.online ? "online" : "offline");
    on.className = `status-pill ${model.state.online ? "ok" : "bad"}`;
    document.getElementById("st-facts").textContent =
      `${t("address")}: ${s.address} · ${s.lon.toFixed(5)}, ${s.lat.toFixed(5)} (GCJ-02) · ${t("events")}: ${fmt.int(model.state.events)}`;
    FT.setDataTime(model.state.watermark);
    renderTanks();
    renderNozzles();
    renderTxns();
    renderPanelsLive();
  }

  for (const b of document.querySelectorAll("#div-switch button")) {
    b.addEventListener("click", () => {
      model.windowS = +b.dataset.w;
      for (const x of document.querySelectorAll("#div-switch button")) x.classList.toggle("on", x === b);
      loadDivergence();
    });
  }
  for (const b of document.querySelectorAll("#ledger-switch button")) {
    b.addEventListener("click", () => {
      model.ledger = b.dataset.p;
      for (const x of document.querySelectorAll("#ledger-switch button")) x.classList.toggle("on", x === b);
      loadLedger();
    });
  }
  FT.applyI18n();
  FT.onLang(() => {
    dirty = true; render(); renderAlerts(); renderDivergence(); loadDeliveries(); loadLedger();
    renderVapor(); renderSafety(true);
    if (traceShown) showTrace(...traceShown);
  });
  window.addEventListener("resize", () => {
    for (const c of [...Object.values(gauges), ...Object.values(divCharts)]) c.resize();
    FTPanels.resize();
  });
  traceCheck.then(loadTwin).then(() => { renderAlerts(); loadDeliveries(); loadLedger(); loadVapor(); loadSafety(); });
  setInterval(render, 1000);
  setInterval(loadDivergence, 60000);
  setInterval(loadLedger, 60000);
  setInterval(loadVapor, 60000);
  setInterval(loadSafety, 60000);
  new FT.Live(onMessage, {stations: [id], statusEl: document.getElementById("conn")});
  window.__station = {model};
})();
