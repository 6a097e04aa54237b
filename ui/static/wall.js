// The wall display (数据大屏): the district map with every station coloured by its worst open alert and
// whether it is online, district KPIs, sales trend, region ranking, price spread and the live alert
// ticker. It runs for weeks unattended: everything it keeps is bounded by the number of stations and open
// alerts (the ticker keeps the newest MAX_TICKER lines), rendering is throttled to once a second whatever
// the message rate, and the websocket reconnects by itself (common.js).
"use strict";

(() => {
  const {t, fmt, el, getJSON, COLORS, SEVERITY_RANK} = FT;
  const MAX_TICKER = 60;
  const MAX_ALERTS = 20000;
  const RENDER_MS = 1000;

  const model = {
    hello: null,
    stations: new Map(),   // id -> {spec, online, lastTs, watermark, day, byGrade, prices, receipts}
    alerts: new Map(),     // id -> alert not yet closed
    deliveries: new Map(), // key -> local day of the delivery's end (today's and yesterday's only)
    ticker: [],            // newest first: {id, ts, station, code, severity, status, zh, en}
    period: localStorage.getItem("fueltwin.trend") || "day",
    trend: null,
    stats: null,
    mode: null,
  };
  let dirty = true;
  let tickerDirty = true;

  FT.header("wall");
  const charts = {};
  // The map: ECharts on the shipped boundary (default, no tiles), or Leaflet on the deployment's tile
  // server when FUELTWIN_TILE_URL is set (tilemap.js).
  let tileMap = null;
  let mapStarted = false;
  const settings = getJSON("/api/v1/ui/settings");
  const base = () => parseFloat(getComputedStyle(document.documentElement).fontSize) || 16;

  // ---- data in ---------------------------------------------------------------------------------

  function stationOf(id) { return model.stations.get(id); }

  function applyState(s) {
    const st = stationOf(s.station);
    if (!st) return;
    const tanks = s.tanks || [];
    st.online = tanks.some((x) => x.last_ts != null) && !tanks.some((x) => x.stale);
    st.lastTs = Math.max(...tanks.map((x) => x.last_ts || 0), 0) || null;
    st.watermark = s.watermark || st.lastTs;
    const sales = s.sales_today || {};
    st.day = sales.day || null;
    st.byGrade = sales.by_grade || {};
    st.prices = s.prices || {};
    const reg = s.regulatory && s.regulatory.ledger_today;
    if (reg) {
      let doc = 0, det = 0, undoc = 0, day = null;
      for (const row of Object.values(reg)) {
        doc += row.receipts_documented_l || 0; det += row.receipts_detected_l || 0;
        undoc += row.receipts_undocumented_l || 0; day = row.key || day;
      }
      st.receipts = {doc, det, undoc, day};
    }
    dirty = true;
  }

  function applyAlert(a, live) {
    if (a.status === "closed") model.alerts.delete(a.id);
    else if (model.alerts.size < MAX_ALERTS || model.alerts.has(a.id)) model.alerts.set(a.id, a);
    if (live) {
      const i = model.ticker.findIndex((x) => x.id === a.id);
      if (i >= 0) model.ticker.splice(i, 1);
      model.ticker.unshift(a);
      if (model.ticker.length > MAX_TICKER) model.ticker.length = MAX_TICKER;
      tickerDirty = true;
    }
    dirty = true;
  }

  function applyDelivery(d) {
    model.deliveries.set(`${d.station}|${d.tank}|${d.end_ts}`, FT.localDay(d.end_ts));
    dirty = true;
  }

  async function loadFromServer() {
    // Alerts not yet closed, newest first; the ticker starts from the newest of them.
    const [open, acked, deliveries] = await Promise.all([
      getJSON("/api/v1/alerts?status=open&limit=10000"), getJSON("/api/v1/alerts?status=acknowledged&limit=10000"),
      getJSON("/api/v1/deliveries?limit=5000")]);
    model.alerts.clear();
    for (const a of [...(open || []), ...(acked || [])]) applyAlert(a, false);
    model.ticker = [...model.alerts.values()].sort((a, b) => b.last_ts - a.last_ts).slice(0, MAX_TICKER);
    model.deliveries.clear();
    for (const d of deliveries || []) applyDelivery(d);
    tickerDirty = dirty = true;
  }

  async function loadPeriodic() {
    const [trend, stats] = await Promise.all([getJSON(`/api/v1/sales/trend?period=${model.period}`),
      (await FT.has("/api/v1/stats")) ? getJSON(`/api/v1/stats?period=${model.period}`) : null]);
    model.trend = trend;
    model.stats = stats;
    dirty = chartsDue = true;
  }

  function onMessage(m) {
    switch (m.type) {
      case "hello":
        model.hello = m;
        model.mode = m.mode;
        FT.setMode(m.mode);
        if (model.stations.size === 0) {
          for (const s of m.stations) {
            model.stations.set(s.id, {spec: s, online: false, lastTs: null, watermark: null, day: null,
                                      byGrade: {}, prices: {}, receipts: null});
          }
          settings.then(initMap);
        }
        loadFromServer();
        break;
      case "state": applyState(m); break;
      case "alert": applyAlert(m, true); break;
      case "delivery": applyDelivery(m); break;
      case "missed": loadFromServer(); break;
      default: break;
    }
  }

  // ---- derived figures -------------------------------------------------------------------------

  function today() {
    let day = null;
    for (const st of model.stations.values()) if (st.day && (!day || st.day > day)) day = st.day;
    return day;
  }

  function worstByStation() {
    const worst = new Map();
    for (const a of model.alerts.values()) {
      const w = worst.get(a.station);
      if (!w || SEVERITY_RANK[a.severity] > SEVERITY_RANK[w]) worst.set(a.station, a.severity);
    }
    return worst;
  }

  function stationColor(st, worst) {
    const w = worst.get(st.spec.id);
    if (w) return COLORS[w];
    return st.online ? COLORS.ok : COLORS.offline;
  }

  // ---- rendering -------------------------------------------------------------------------------

  function district() {
    return fetch("/static/vendor/maps/tianjin.geojson").then((r) => r.json())
      .then((geo) => ({...geo, features: geo.features.filter((f) => f.properties.name === "滨海新区")}));
  }

  function initMap(conf) {
    if (mapStarted) return;
    mapStarted = true;
    if (conf && conf.tile_url) {
      Promise.all([FTTileMap.load(), district()]).then(([, binhai]) => {
        document.querySelector(".panel.map").classList.add("tiles");
        tileMap = new FTTileMap.TileMap(document.getElementById("chart-map"), {
          tileUrl: conf.tile_url, attribution: conf.tile_attribution, boundary: binhai,
          tooltip: stationTip, onClick: (sid) => { location.href = `/station/${sid}`; }});
        dirty = true;
        render();
      });
      return;
    }
    charts.map = echarts.init(document.getElementById("chart-map"), null, {renderer: "canvas"});
    district().then((binhai) => {
      echarts.registerMap("binhai", binhai);
      charts.map.on("click", (p) => { if (p.seriesId === "stations" && p.name) location.href = `/station/${p.name}`; });
      dirty = true;
      render();
    });
  }

  function regionCentres() {
    const acc = new Map();
    for (const st of model.stations.values()) {
      const c = acc.get(st.spec.region) || [0, 0, 0];
      c[0] += st.spec.lon; c[1] += st.spec.lat; c[2] += 1;
      acc.set(st.spec.region, c);
    }
    return [...acc].map(([name, c]) => ({name, value: [c[0] / c[2], c[1] / c[2]]}));
  }

  function tooltip(p) {
    return p.seriesId === "stations" ? stationTip(p.name) : p.name;
  }

  // The station's key figures on hover (both maps); every datum escaped.
  function stationTip(sid) {
    const st = stationOf(sid);
    if (!st) return "";
    const day = today();
    const sales = st.day === day ? Object.values(st.byGrade) : [];
    const vol = sales.reduce((s, g) => s + g.volume_l, 0), amt = sales.reduce((s, g) => s + g.amount_cny, 0);
    const mine = [...model.alerts.values()].filter((a) => a.station === st.spec.id);
    const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
    return [`<b>${esc(st.spec.name)}</b> (${esc(st.spec.id)})`, esc(st.spec.region),
      `${t(st.online ? "online" : "offline")} · ${t("dataTime")} ${fmt.time(st.watermark)}`,
      `${t("salesVolume")}: ${fmt.litres(vol)} · ${fmt.money(amt)}`,
      `${t("openAlerts")}: ${mine.length}` + (mine.length ? " — " + mine.slice(0, 3).map((a) => esc(fmt.code(a.code))).join("、") : ""),
    ].join("<br>");
  }

  function renderMap(worst) {
    if (tileMap) return renderTileMap(worst);
    if (!charts.map || !echarts.getMap("binhai")) return;
    const b = base();
    const data = [];
    for (const st of model.stations.values()) {
      const w = worst.get(st.spec.id);
      data.push({name: st.spec.id, value: [st.spec.lon, st.spec.lat, w ? SEVERITY_RANK[w] : 0],
                 itemStyle: {color: stationColor(st, worst)}});
    }
    charts.map.setOption({
      backgroundColor: "transparent",
      tooltip: {trigger: "item", formatter: tooltip, textStyle: {fontSize: b * 0.9}, confine: true},
      geo: {map: "binhai", roam: true, layoutCenter: ["50%", "50%"], layoutSize: "98%",
            itemStyle: {areaColor: "#0e2440", borderColor: "#3aa0ff", borderWidth: 1.5},
            emphasis: {disabled: true}, label: {show: false}, silent: true},
      series: [
        {id: "regions", type: "scatter", coordinateSystem: "geo", data: regionCentres(), symbolSize: 0,
         silent: true, label: {show: true, formatter: "{b}", color: "rgba(200,220,255,0.4)", fontSize: b * 0.6}},
        {id: "stations", type: "scatter", coordinateSystem: "geo", data, symbolSize: (v) => b * (v[2] ? 0.9 : 0.55),
         // worse stations drawn last, on top
         zlevel: 1, progressive: 0, animation: false, emphasis: {scale: 1.8}},
      ],
    });
  }

  function renderTileMap(worst) {
    const b = base();
    const points = [];
    for (const st of model.stations.values()) {
      const w = worst.get(st.spec.id);
      const rank = w ? SEVERITY_RANK[w] : 0;
      // the ECharts symbol's diameter, as a circle's radius
      points.push({id: st.spec.id, lon: st.spec.lon, lat: st.spec.lat, color: stationColor(st, worst), rank,
                   radius: Math.round(b * (rank ? 0.9 : 0.55) / 2 * 10) / 10});
    }
    tileMap.update(points, regionCentres());
  }

  function renderKpis(worst) {
    const day = today();
    let online = 0, volume = 0, revenue = 0;
    const grades = {};
    let docL = 0, detL = 0, undocL = 0, hasReceipts = false;
    for (const st of model.stations.values()) {
      if (st.online) online += 1;
      if (st.day === day) {
        for (const [g, v] of Object.entries(st.byGrade)) {
          volume += v.volume_l; revenue += v.amount_cny;
          const gg = grades[g] || (grades[g] = {volume_l: 0, amount_cny: 0});
          gg.volume_l += v.volume_l; gg.amount_cny += v.amount_cny;
        }
      }
      if (st.receipts && st.receipts.day === day) {
        hasReceipts = true; docL += st.receipts.doc; detL += st.receipts.det; undocL += st.receipts.undoc;
      }
    }
    document.getElementById("k-online").textContent = `${online} / ${model.stations.size}`;
    document.getElementById("k-volume").textContent = fmt.litres(volume);
    document.getElementById("k-revenue").textContent = fmt.money(revenue);
    document.getElementById("k-alerts").textContent = fmt.int(model.alerts.size);
    let deliveries = 0;
    for (const d of model.deliveries.values()) if (d === day) deliveries += 1;
    document.getElementById("k-deliveries").textContent = fmt.int(deliveries);
    const rk = document.getElementById("kpi-receipts");
    rk.hidden = !hasReceipts;
    if (hasReceipts) {
      // Detected receipts in three parts: matched to an order; no order yet but still within the paper
      // trail's window (orders are often filed after the drop); and past it, alarmed (无票油).
      document.getElementById("k-receipts-doc").textContent = fmt.litres(docL);
      document.getElementById("k-receipts-pending").textContent = fmt.litres(Math.max(0, detL - docL - undocL));
      const undoc = document.getElementById("k-receipts-undoc");
      undoc.textContent = fmt.litres(undocL);
      undoc.classList.toggle("flag", undocL > 0);
    }
    const rows = document.getElementById("grade-rows");
    const names = Object.keys(grades).sort();
    rows.replaceChildren(...(names.length ? names.map((g) => el("tr", null, el("td", {text: g}),
      el("td", {text: fmt.litres(grades[g].volume_l)}), el("td", {text: fmt.money(grades[g].amount_cny)})))
      : [el("tr", null, el("td", {colspan: "3", class: "muted", text: t("noData")}))]));
    let newest = null;
    for (const st of model.stations.values()) if (st.watermark && (!newest || st.watermark > newest)) newest = st.watermark;
    FT.setDataTime(newest);
  }

  const axisStyle = () => ({axisLabel: {color: "#9fb3c8", fontSize: base() * 0.75},
                            axisLine: {lineStyle: {color: "#2a4466"}}, splitLine: {lineStyle: {color: "#1b3050"}}});

  function chart(id) {
    if (!charts[id]) charts[id] = echarts.init(document.getElementById(id));
    return charts[id];
  }

  function noData(c) {
    c.setOption({graphic: [{type: "text", left: "center", top: "middle", style: {text: t("noData"),
      fill: "#6b7a90", fontSize: base()}}], xAxis: {show: false}, yAxis: {show: false}, series: []}, true);
  }

  function renderTypes() {
    const c = chart("chart-types");
    const counts = new Map();
    for (const a of model.alerts.values()) {
      const k = `${a.code}|${a.severity}`;
      counts.set(a.code, (counts.get(a.code) || 0) + 1);
      counts.set(k, a.severity);
    }
    const codes = [...counts.keys()].filter((k) => !k.includes("|")).sort((a, b) => counts.get(a) - counts.get(b));
    if (!codes.length) return noData(c);
    c.setOption({animation: false, graphic: [], grid: {left: "3%", right: "8%", top: 8, bottom: 8, containLabel: true},
      xAxis: {type: "value", show: true, minInterval: 1, ...axisStyle()},
      yAxis: {type: "category", show: true, data: codes.map(fmt.code), ...axisStyle()},
      series: [{type: "bar", barMaxWidth: base() * 1.4, data: codes.map((k) => ({value: counts.get(k), itemStyle: {color: "#ff8c1a"}})),
                label: {show: true, position: "right", color: "#dfe9f5", fontSize: base() * 0.75}}]}, true);
  }

  function renderTrend() {
    const c = chart("chart-trend");
    const tr = model.trend;
    const note = document.getElementById("trend-note");
    if (!tr || !tr.buckets || !tr.buckets.some((b) => b.volume_l > 0)) { note.textContent = ""; return noData(c); }
    note.textContent = tr.key || "";  // which day, month or year the bars are
    const link = document.getElementById("trend-export");  // that period's figures by station and grade
    link.href = `/api/v1/stats/export?period=${model.period}&key=${encodeURIComponent(tr.key)}`;
    link.hidden = !tr.key;
    const label = (k) => model.period === "day" ? k.slice(11) + (FT.lang() === "zh" ? "时" : "h")
      : model.period === "month" ? k.slice(8) : k.slice(5);
    c.setOption({animation: false, graphic: [], tooltip: {trigger: "axis"}, legend: {show: false},
      grid: {left: "3%", right: "3%", top: 36, bottom: 4, containLabel: true},
      xAxis: {type: "category", show: true, data: tr.buckets.map((b) => label(b.key)), ...axisStyle()},
      yAxis: [{type: "value", show: true, name: FT.lang() === "zh" ? "升" : "L", nameTextStyle: {color: "#9fb3c8"}, ...axisStyle()},
              {type: "value", show: true, name: fmt.moneyUnit(), nameTextStyle: {color: "#9fb3c8"}, ...axisStyle(), splitLine: {show: false}}],
      // hours (days, months) not reached yet are gaps, not zeros: sales have not stopped
      series: [{type: "bar", name: t("volume"), data: tr.buckets.map((b) => b.future ? null : Math.round(b.volume_l)),
                itemStyle: {color: "#3aa0ff"}},
               {type: "line", name: t("amount"), yAxisIndex: 1, smooth: false, symbol: "none",
                data: tr.buckets.map((b) => b.future ? null : +fmt.moneyValue(b.amount_cny).toFixed(2)),
                lineStyle: {color: "#f1c40f"}}]}, true);
  }

  function renderRegions() {
    const c = chart("chart-regions");
    const day = today();
    const by = new Map();
    const stats = model.stats;
    const periodic = model.period !== "day" && stats && stats.period === model.period && stats.regions;
    document.getElementById("region-note").textContent = periodic ? stats.key : t("todayRevenue");
    if (periodic) {
      // this month's or year's revenue by region, as the trend beside it (refreshed every 30 s)
      for (const [region, r] of Object.entries(stats.regions)) by.set(region, r.amount_cny);
    } else {
      for (const st of model.stations.values()) {  // today's, live from the station states
        let amt = 0;
        if (st.day === day) for (const g of Object.values(st.byGrade)) amt += g.amount_cny;
        by.set(st.spec.region, (by.get(st.spec.region) || 0) + amt);
      }
    }
    const rows = [...by].sort((a, b) => a[1] - b[1]).slice(-12);
    if (!rows.some((r) => r[1] > 0)) return noData(c);
    c.setOption({animation: false, graphic: [], tooltip: {trigger: "axis", axisPointer: {type: "shadow"}},
      grid: {left: "3%", right: "12%", top: 4, bottom: 4, containLabel: true},
      xAxis: {type: "value", show: false},
      yAxis: {type: "category", show: true, data: rows.map((r) => r[0]), ...axisStyle()},
      series: [{type: "bar", data: rows.map((r) => +fmt.moneyValue(r[1]).toFixed(2)), itemStyle: {color: "#2ecc71"},
                label: {show: true, position: "right", color: "#dfe9f5", fontSize: base() * 0.7}}]}, true);
  }

  function priceRows() {
    const market = model.stats && model.stats.market && model.stats.market.grades;
    if (market && Object.keys(market).length) {
      return Object.entries(market).map(([g, m]) => [g, m.min, m.reference, m.max]);
    }
    const by = {};
    for (const st of model.stations.values()) for (const [g, p] of Object.entries(st.prices)) (by[g] || (by[g] = [])).push(p);
    return Object.entries(by).sort().map(([g, ps]) => {
      ps.sort((a, b) => a - b);
      return [g, ps[0], ps[Math.floor(ps.length / 2)], ps[ps.length - 1]];
    });
  }

  function renderPrices() {
    const c = chart("chart-prices");
    const rows = priceRows();
    if (!rows.length) return noData(c);
    c.setOption({animation: false, graphic: [], tooltip: {trigger: "axis", formatter: (ps) => {
        const r = rows[ps[0].dataIndex];
        return `${r[0]}<br>min ${r[1].toFixed(2)} · ${FT.lang() === "zh" ? "中位" : "median"} ${r[2].toFixed(2)} · max ${r[3].toFixed(2)}`;
      }},
      grid: {left: "3%", right: "4%", top: 8, bottom: 4, containLabel: true},
      xAxis: {type: "category", show: true, data: rows.map((r) => r[0]), ...axisStyle()},
      yAxis: {type: "value", show: true, scale: true, ...axisStyle()},
      series: [{type: "bar", stack: "p", data: rows.map((r) => r[1]), itemStyle: {color: "transparent"}, silent: true},
               {type: "bar", stack: "p", data: rows.map((r) => +(r[3] - r[1]).toFixed(3) || 0.005),
                itemStyle: {color: "rgba(58,160,255,0.45)"}},
               {type: "scatter", data: rows.map((r) => r[2]), symbol: "rect", symbolSize: [base() * 1.6, 3],
                itemStyle: {color: "#f1c40f"}}]}, true);
  }

  function renderTicker() {
    const list = document.getElementById("ticker");
    if (!model.ticker.length) {
      list.replaceChildren(el("li", {class: "muted", text: t("noAlerts")}));
      return;
    }
    const zh = FT.lang() === "zh";
    list.replaceChildren(...model.ticker.map((a) => {
      const st = stationOf(a.station);
      return el("li", {class: `sev-${a.severity} st-${a.status}`, "data-station": a.station, "data-alert": a.id,
                       onclick: () => { location.href = `/station/${a.station}`; }},
        el("span", {class: "t-time", text: fmt.time(a.last_ts)}),
        el("span", {class: `t-sev sev-${a.severity}`, text: t(a.severity)}),
        el("span", {class: "t-station", text: st ? st.spec.name : a.station}),
        el("span", {class: "t-msg", text: zh ? a.message_zh : a.message_en}),
        a.status !== "open" ? el("span", {class: "t-status", text: t(a.status)}) : null);
    }));
  }

  function renderLegend() {
    const items = [["ok", t("online")], ["offline", t("offline")], ["info", t("info")], ["warning", t("warning")],
                   ["alarm", t("alarm")], ["critical", t("critical")]];
    document.getElementById("map-legend").replaceChildren(...items.map(([k, label]) =>
      el("span", {class: "lg"}, el("i", {style: `background:${COLORS[k]}`}), label)));
  }

  function render() {
    if (tickerDirty) { tickerDirty = false; renderTicker(); }
    if (!dirty || !model.hello) return;
    dirty = false;
    const worst = worstByStation();
    renderMap(worst);
    renderKpis(worst);
    // The side charts change slowly: every 5th round (5 s) unless something asked for them now.
    if (chartsDue || ++round % 5 === 0) {
      chartsDue = false;
      renderTypes();
      renderTrend();
      renderRegions();
      renderPrices();
    }
  }
  let round = 0;
  let chartsDue = true;

  // ---- wiring ----------------------------------------------------------------------------------

  for (const b of document.querySelectorAll("#trend-switch button")) {
    b.classList.toggle("on", b.dataset.p === model.period);
    b.addEventListener("click", () => {
      model.period = b.dataset.p;
      localStorage.setItem("fueltwin.trend", model.period);
      for (const x of document.querySelectorAll("#trend-switch button")) x.classList.toggle("on", x === b);
      loadPeriodic();
    });
  }
  FT.applyI18n();
  renderLegend();
  FT.onLang(() => { renderLegend(); tickerDirty = dirty = chartsDue = true; render(); });
  window.addEventListener("resize", () => {
    for (const c of Object.values(charts)) c.resize();
    if (tileMap) tileMap.resize();
    dirty = chartsDue = true;
  });
  setInterval(render, RENDER_MS);
  setInterval(() => { if (tickerDirty) { tickerDirty = false; renderTicker(); } }, 250);
  setInterval(loadPeriodic, 30000);
  loadPeriodic();
  const live = new FT.Live(onMessage, {statusEl: document.getElementById("conn")});

  // For the browser tests and the benchmark: what the map shows, read back from ECharts itself.
  window.__wall = {
    live, model,
    mapKind: () => tileMap ? "tiles" : charts.map ? "echarts" : null,
    mapPoints() {
      if (tileMap) return tileMap.points();
      if (!charts.map) return [];
      const opt = charts.map.getOption();
      const s = opt && opt.series && opt.series.find((x) => x.id === "stations");
      if (!s) return [];
      const rect = document.getElementById("chart-map").getBoundingClientRect();
      const out = [];
      for (const d of s.data) {
        const px = charts.map.convertToPixel({geoIndex: 0}, [d.value[0], d.value[1]]);
        if (!px) return [];  // not laid out yet
        const [x, y] = px;
        out.push({id: d.name, x, y, color: d.itemStyle.color,
                  inside: x >= 0 && y >= 0 && x <= rect.width && y <= rect.height,
                  onLand: charts.map.containPixel({geoIndex: 0}, [x, y])});
      }
      return out;
    },
    renders: () => charts.map || tileMap ? 1 : 0,
    tilesLoaded: () => tileMap ? tileMap.tilesLoaded : 0,
  };
})();
