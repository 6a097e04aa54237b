// fueltwin live page: stations by region with their tanks and nozzles, and the alert list, kept current
// from the /ws/live websocket. Plain DOM, no dependencies: the page must run on a control-room PC that
// has no internet. Data is written with textContent only (never innerHTML), so nothing from a station
// can inject markup.
"use strict";

const I18N = {
  zh: {
    title: "加油站实时数字孪生", region: "区域", all: "全部", dataTime: "数据时间", alerts: "告警",
    connecting: "连接中…", connected: "已连接", reconnecting: "重连中（{s} 秒）", tank: "油罐", grade: "油品",
    observed: "实测 L", expected: "应有 L", divergence: "差值 L", leak: "漂移 L/h", online: "在线",
    offline: "离线", nodata: "无数据", delivering: "收油中", stale: "中断", ack: "确认", close: "关闭",
    open: "未处理", acknowledged: "已确认", closed: "已关闭", who: "请输入处理人姓名：",
    missed: "有 {a} 条告警、{d} 条收油记录未能实时送达，已从服务器重新加载。", failed: "操作失败：",
    idle: "空闲", lifted: "提枪", fuelling: "加油中", finished: "完成", stations: "座",
    live: "实时", demo: "演示", replay: "回放", info: "提示", warning: "警告", alarm: "报警", critical: "严重",
  },
  en: {
    title: "Fuel station live twin", region: "Region", all: "All", dataTime: "Data time", alerts: "Alerts",
    connecting: "Connecting…", connected: "Connected", reconnecting: "Reconnecting in {s} s", tank: "Tank",
    grade: "Grade", observed: "Observed L", expected: "Expected L", divergence: "Diff. L", leak: "Drift L/h",
    online: "online", offline: "offline", nodata: "no data", delivering: "delivery", stale: "lost",
    ack: "Ack", close: "Close", open: "open", acknowledged: "acknowledged", closed: "closed",
    who: "Your name:", missed: "{a} alerts and {d} deliveries were not delivered live; reloaded from the server.",
    failed: "Failed: ", idle: "idle", lifted: "lifted", fuelling: "fuelling", finished: "finished",
    stations: "stations", live: "live", demo: "demo", replay: "replay", info: "info", warning: "warning",
    alarm: "alarm", critical: "critical",
  },
};
const TZ = "Asia/Shanghai";
const MAX_ALERTS = 300;

let lang = localStorage.getItem("fueltwin.lang") === "en" ? "en" : "zh";
let fmtTime = null;
let fmtNum = null;

const model = {
  hello: null,
  stations: new Map(),   // id -> {spec, state, els}
  alerts: new Map(),     // id -> alert
  region: localStorage.getItem("fueltwin.region") || "",
  dataTs: null,
};
const dirty = new Set();
let alertsDirty = false;
let frame = 0;

function t(key, vars) {
  let s = (I18N[lang] && I18N[lang][key]) || I18N.zh[key] || key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
  return s;
}

function setFormats() {
  const locale = lang === "zh" ? "zh-CN" : "en-GB";
  fmtTime = new Intl.DateTimeFormat(locale, {
    timeZone: TZ, month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
    hour12: false,
  });
  fmtNum = new Intl.NumberFormat(locale, {maximumFractionDigits: 0});
}

function when(ts) { return ts == null ? "—" : fmtTime.format(new Date(ts * 1000)); }
function litres(v) { return v == null ? "—" : fmtNum.format(v); }
function signed(v, digits) {
  if (v == null) return "—";
  const s = v.toFixed(digits);
  return v > 0 ? "+" + s : s;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c != null) node.append(c);
  return node;
}

// ---- static texts and header ----------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  document.getElementById("lang").textContent = lang === "zh" ? "EN" : "中文";
  setFormats();
  if (model.hello) buildStations();
  alertsDirty = true;
  schedule();
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("fueltwin.lang", lang);
  applyLanguage();
  setConn(conn.state);
});

document.getElementById("region").addEventListener("change", (ev) => {
  model.region = ev.target.value;
  localStorage.setItem("fueltwin.region", model.region);
  sendSubscription();
  applyRegionFilter();
  alertsDirty = true;
  schedule();
});

function regionStations() {
  if (!model.hello) return [];
  return model.hello.stations.filter((s) => !model.region || s.region === model.region).map((s) => s.id);
}

function applyRegionFilter() {
  for (const sec of document.querySelectorAll("#stations > section")) {
    sec.hidden = !!model.region && sec.dataset.region !== model.region;
  }
}

// ---- stations ------------------------------------------------------------------------------------

function buildStations() {
  const root = document.getElementById("stations");
  root.replaceChildren();
  const byRegion = new Map();
  for (const spec of model.hello.stations) {
    if (!byRegion.has(spec.region)) byRegion.set(spec.region, []);
    byRegion.get(spec.region).push(spec);
  }
  const select = document.getElementById("region");
  select.replaceChildren(el("option", {value: "", text: t("all")}));
  for (const region of [...byRegion.keys()].sort()) {
    select.append(el("option", {value: region, text: region}));
    const grid = el("div", {class: "region-grid"});
    for (const spec of byRegion.get(region)) grid.append(buildStation(spec));
    root.append(el("section", {"data-region": region},
      el("h2", {text: `${region} · ${byRegion.get(region).length} ${t("stations")}`}), grid));
  }
  if (model.region && !byRegion.has(model.region)) model.region = "";
  select.value = model.region;
  applyRegionFilter();
}

function buildStation(spec) {
  const entry = model.stations.get(spec.id) || {spec, state: null};
  entry.spec = spec;
  const dot = el("span", {class: "dot"});
  const status = el("span", {class: "muted"});
  const whenEl = el("span", {class: "when muted"});
  const rows = new Map();
  const tbody = el("tbody");
  for (const tank of spec.tanks) {
    const cells = {
      id: el("td"), grade: el("td", {text: tank.grade}), observed: el("td"), expected: el("td"),
      divergence: el("td"), leak: el("td"),
    };
    cells.id.append(tank.id);
    const tag = el("span", {class: "tag"});
    cells.id.append(tag);
    const tr = el("tr", {}, cells.id, cells.grade, cells.observed, cells.expected, cells.divergence, cells.leak);
    tbody.append(tr);
    rows.set(tank.id, {tr, tag, ...cells});
  }
  const head = el("tr", {}, ...["tank", "grade", "observed", "expected", "divergence", "leak"]
    .map((k) => el("th", {text: t(k)})));
  const nozzles = el("div", {class: "nozzles"});
  const nozzleEls = new Map();
  for (const n of spec.nozzles) {
    const chip = el("span", {class: "nozzle", title: `${n.id} → ${n.tank} ${n.grade}`});
    nozzles.append(chip);
    nozzleEls.set(n.id, chip);
  }
  const card = el("article", {class: "station"},
    el("div", {class: "head"}, dot, el("span", {class: "name", text: spec.name}),
      el("span", {class: "muted", text: spec.id}), status, whenEl),
    el("table", {}, el("thead", {}, head), tbody), nozzles);
  entry.els = {card, dot, status, when: whenEl, rows, nozzles: nozzleEls};
  model.stations.set(spec.id, entry);
  renderStation(entry);
  return card;
}

function tankValues(entry, tankId) {
  const tanks = (entry.state && entry.state.tanks) || [];
  return tanks.find((x) => x.id === tankId) || null;
}

function renderStation(entry) {
  const {els, spec, state} = entry;
  const tanks = (state && state.tanks) || [];
  const heard = tanks.some((x) => x.last_ts != null);
  const online = heard && !tanks.some((x) => x.stale);
  els.card.classList.toggle("offline", !online);
  els.dot.className = "dot " + (!heard ? "" : online ? "on" : "off");
  els.status.textContent = !heard ? t("nodata") : online ? t("online") : t("offline");
  const last = Math.max(...tanks.map((x) => x.last_ts || 0));
  els.when.textContent = last > 0 ? when(last) : "";
  for (const tank of spec.tanks) {
    const r = els.rows.get(tank.id);
    const v = tankValues(entry, tank.id) || {};
    r.observed.textContent = litres(v.observed_l);
    r.expected.textContent = litres(v.expected_l);
    r.divergence.textContent = signed(v.divergence_l, 1);
    r.divergence.className = v.divergence_l == null ? "" : v.divergence_l < 0 ? "neg" : "pos";
    r.leak.textContent = v.leak_rate_lph == null ? "—"
      : `${signed(v.leak_rate_lph, 1)} ± ${(v.leak_rate_se_lph || 0).toFixed(1)}`;
    r.tr.className = v.stale ? "stale" : "";
    r.tag.textContent = v.stale ? t("stale") : v.delivering ? t("delivering") : "";
  }
  const nozzles = new Map(((state && state.nozzles) || []).map((n) => [n.id, n]));
  for (const [id, chip] of els.nozzles) {
    const n = nozzles.get(id);
    const name = n ? n.state : "idle";
    chip.className = "nozzle " + name + (n && n.stale ? " stale" : "");
    const running = n && n.state === "fuelling" && n.running_l ? ` ${n.running_l.toFixed(1)} L` : "";
    chip.textContent = `${id} ${t(name)}${running}`;
  }
}

function onState(msg) {
  const entry = model.stations.get(msg.station);
  if (!entry) return;
  entry.state = msg;
  bumpDataTime(msg.watermark);
  for (const tank of msg.tanks || []) bumpDataTime(tank.last_ts);
  dirty.add(msg.station);
  schedule();
}

function onDivergence(msg) {
  const entry = model.stations.get(msg.station);
  if (!entry) return;
  if (!entry.state) entry.state = {station: msg.station, tanks: [], nozzles: []};
  let tank = entry.state.tanks.find((x) => x.id === msg.tank);
  if (!tank) entry.state.tanks.push(tank = {id: msg.tank});
  if (tank.last_ts != null && msg.ts < tank.last_ts) return;  // an older point than the state we hold
  Object.assign(tank, {observed_l: msg.observed_l, expected_l: msg.expected_l, divergence_l: msg.divergence_l,
    leak_rate_lph: msg.leak_rate_lph, leak_rate_se_lph: msg.leak_rate_se_lph, last_ts: msg.ts});
  bumpDataTime(msg.ts);
  dirty.add(msg.station);
  schedule();
}

function bumpDataTime(ts) {
  if (ts != null && (model.dataTs == null || ts > model.dataTs)) model.dataTs = ts;
}

// ---- alerts --------------------------------------------------------------------------------------

function upsertAlert(alert) {
  const known = model.alerts.get(alert.id);
  const steps = (a) => (a.history || []).length;
  // A REST reload can race a push: never let an older copy replace a newer one.
  if (known && (steps(known) > steps(alert) || (steps(known) === steps(alert) && known.last_ts > alert.last_ts))) {
    return;
  }
  model.alerts.set(alert.id, alert);
  if (model.alerts.size > MAX_ALERTS * 2) {
    const keep = sortedAlerts().slice(0, MAX_ALERTS);
    model.alerts = new Map(keep.map((a) => [a.id, a]));
  }
  alertsDirty = true;
  schedule();
}

function sortedAlerts() {
  return [...model.alerts.values()].sort((a, b) => b.last_ts - a.last_ts || (a.id < b.id ? 1 : -1));
}

async function reloadAlerts() {
  try {
    const resp = await fetch("/api/v1/alerts?limit=" + MAX_ALERTS);
    if (!resp.ok) throw new Error(resp.status + " " + resp.statusText);
    for (const alert of await resp.json()) upsertAlert(alert);
  } catch (err) {
    console.warn("cannot load alerts", err);
  }
}

function renderAlerts() {
  const list = document.getElementById("alerts");
  const shown = new Set(regionStations());
  const alerts = sortedAlerts().filter((a) => !model.region || shown.has(a.station)).slice(0, MAX_ALERTS);
  const active = alerts.filter((a) => a.status !== "closed").length;
  document.getElementById("alert-count").textContent = `${active} / ${alerts.length}`;
  list.replaceChildren(...alerts.map((a) => {
    const station = model.stations.get(a.station);
    const actions = el("div", {class: "actions"});
    if (a.status === "open") actions.append(el("button", {text: t("ack"), onclick: () => act(a, "ack")}));
    if (a.status !== "closed") actions.append(el("button", {text: t("close"), onclick: () => act(a, "close")}));
    return el("li", {class: `${a.severity} ${a.status}`},
      el("div", {text: lang === "zh" ? a.message_zh : a.message_en}),
      el("div", {class: "meta"},
        el("span", {text: when(a.last_ts)}),
        el("span", {text: station ? station.spec.name : a.station}),
        el("span", {text: `${t(a.severity)} · ${a.code}`}),
        el("span", {text: t(a.status)})),
      actions.children.length ? actions : null);
  }));
}

async function act(alert, action) {
  let by = localStorage.getItem("fueltwin.user") || "";
  by = (window.prompt(t("who"), by) || "").trim();
  if (!by) return;
  localStorage.setItem("fueltwin.user", by);
  try {
    const resp = await fetch(`/api/v1/alerts/${encodeURIComponent(alert.id)}/${action}`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({by}),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(typeof body.detail === "string" ? body.detail : resp.statusText);
    upsertAlert(body);
  } catch (err) {
    window.alert(t("failed") + err.message);
  }
}

// ---- rendering, throttled to the display's frame rate --------------------------------------------

function schedule() {
  if (!frame) frame = requestAnimationFrame(render);
}

function render() {
  frame = 0;
  for (const id of dirty) {
    const entry = model.stations.get(id);
    if (entry && entry.els) renderStation(entry);
  }
  dirty.clear();
  if (alertsDirty) {
    alertsDirty = false;
    renderAlerts();
  }
  document.getElementById("data-time").textContent = when(model.dataTs);
}

// ---- the websocket, reconnecting by itself -------------------------------------------------------

const conn = {ws: null, state: "connecting", attempt: 0, retryIn: 0, timer: 0};

function setConn(state, seconds) {
  conn.state = state;
  const node = document.getElementById("conn");
  node.className = "conn " + (state === "connected" ? "up" : "down");
  node.textContent = t(state, {s: seconds == null ? conn.retryIn : seconds});
}

function sendSubscription() {
  if (conn.ws && conn.ws.readyState === WebSocket.OPEN) {
    conn.ws.send(JSON.stringify({subscribe: model.region ? regionStations() : []}));
  }
}

let noticeTimer = 0;
function showNotice(text) {
  const node = document.getElementById("notice");
  node.textContent = text;
  node.hidden = !text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { node.hidden = true; }, 30000);
}

function onMessage(msg) {
  switch (msg.type) {
    case "hello":
      conn.attempt = 0;
      model.hello = msg;
      document.getElementById("district").textContent = msg.district;
      document.getElementById("mode").textContent = t(msg.mode);
      buildStations();
      if (model.region) sendSubscription();
      reloadAlerts();
      break;
    case "state": onState(msg); break;
    case "divergence": onDivergence(msg); break;
    case "alert": upsertAlert(msg); break;
    case "delivery": break;  // recognised deliveries also arrive as DELIVERY_DETECTED alerts
    case "missed":
      showNotice(t("missed", {a: msg.alerts, d: msg.deliveries}));
      reloadAlerts();
      break;
    case "error": console.warn("server:", msg.message); break;
    default: break;
  }
}

function connect() {
  clearTimeout(conn.timer);
  setConn("connecting");
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/live`;
  const ws = new WebSocket(url);
  conn.ws = ws;
  ws.onopen = () => setConn("connected");
  ws.onmessage = (ev) => {
    try {
      onMessage(JSON.parse(ev.data));
    } catch (err) {
      console.error("bad message", err);
    }
  };
  ws.onclose = (ev) => {
    if (conn.ws !== ws) return;
    // Exponential backoff with jitter, 1 s to 30 s, so a restarted server is not stormed by every screen.
    const delay = Math.min(30, 2 ** conn.attempt) * (0.5 + Math.random() / 2);
    conn.attempt = Math.min(conn.attempt + 1, 6);
    conn.retryIn = Math.ceil(delay);
    if (ev.reason) console.warn("websocket closed:", ev.code, ev.reason);
    setConn("reconnecting", conn.retryIn);
    conn.timer = setTimeout(connect, delay * 1000);
  };
}

setFormats();
applyLanguage();
connect();
