// The demo's fault injection on the station page (POST/GET /api/v1/demo/faults): a tester picks a fault
// type, the tank or nozzle, its parameters (a scenario file's words, prefilled with values a demo shows
// soon), and injects it into this station's simulator; the table below says, for every fault
// injected here, when it really began, the alert that should find it and when the twin did. Shown only
// where the server has the API (a demo), so a live or replay server never offers it.
"use strict";

(() => {
  const {t, fmt, el, getJSON, postJSON} = FT;
  const id = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  const API = "/api/v1/demo/faults";

  Object.assign(FT.I18N.zh, {
    injectFaults: "故障注入（演示）", injectHint: "向本站的模拟设备注入故障，观察孪生体何时检出。参数与场景文件相同。",
    faultType: "故障类型", target: "对象", wholeStation: "整站", startsIn: "开始于（从现在起）", within: "检出时限",
    inject: "注入", injected: "已注入的故障", injectedAt: "注入时间", began: "开始生效", expectedAlert: "应由告警检出",
    detection: "检出", notActed: "尚未生效", notYet: "尚未检出", foundAfter: "{t}后检出", metDeadline: "在时限内",
    lateDeadline: "超出时限", params: "参数", noneInjected: "本站尚未注入故障", optional: "可选",
  });
  // the scenario parameters by name (the file's own word on hover)
  const PARAMS = {
    rate_lph: ["渗漏速率 L/h", "rate L/h"], volume_l: ["油量 L", "volume L"], duration: ["历时", "duration"],
    for: ["持续", "lasts"], factor: ["系数", "factor"], fraction: ["比例", "fraction"], litres: ["升数", "litres"],
    count: ["个数", "count"], mm_per_day: ["毫米/天", "mm/day"], a_l: ["A/L", "A/L"], umol_per_mol: ["µmol/mol", "µmol/mol"],
    scope: ["范围", "scope"], mainboard_id: ["新主板号", "new board id"], firmware: ["固件", "firmware"],
    direction: ["方向", "direction"],
  };
  const paramName = (p) => (PARAMS[p] || [p, p])[FT.lang() === "zh" ? 0 : 1];
  Object.assign(FT.I18N.en, {
    injectFaults: "Fault injection (demo)", injectHint: "Inject a fault into this station's simulated devices and see when the twin finds it. Parameters as in a scenario file.",
    faultType: "Fault type", target: "Target", wholeStation: "whole station", startsIn: "Starts in (from now)", within: "Deadline",
    inject: "Inject", injected: "Faults injected", injectedAt: "Injected", began: "Began", expectedAlert: "Expected alert",
    detection: "Detection", notActed: "not active yet", notYet: "not found yet", foundAfter: "found after {t}", metDeadline: "in time",
    lateDeadline: "late", params: "Parameters", noneInjected: "no fault injected here yet", optional: "optional",
  });

  const panel = document.getElementById("faults-panel");
  let types = [];
  let spec = null;
  let error = "";

  // "2 h 5 min" style, from seconds
  function span(s) {
    if (s == null) return "—";
    const m = Math.round(s / 60);
    if (m < 60) return FT.lang() === "zh" ? `${m} 分钟` : `${m} min`;
    const h = Math.floor(m / 60), r = m % 60;
    return FT.lang() === "zh" ? `${h} 小时${r ? ` ${r} 分钟` : ""}` : `${h} h${r ? ` ${r} min` : ""}`;
  }

  // a parameter's text: a number when it reads as one, else as written (durations such as 30m)
  function value(text) {
    const s = text.trim();
    return s !== "" && Number.isFinite(Number(s)) ? Number(s) : s;
  }

  // the station's tanks or nozzles a type can act on (a vapor fault: gasoline nozzles only)
  function targets(type) {
    if (!spec) return [];
    const fits = (x) => !type.grades || type.grades.includes(x.grade);
    if (type.entity === "tank") return spec.tanks.filter(fits).map((x) => [x.id, `${x.id} · ${x.grade}`]);
    if (type.entity === "nozzle") return spec.nozzles.filter(fits).map((x) => [x.id, `${x.id} · ${x.grade} · ${x.tank}`]);
    return [["", t("wholeStation")]];
  }

  function renderForm() {
    const form = document.getElementById("fault-form");
    const typeSel = el("select", {id: "fault-type"}, ...types.map((x) => el("option", {value: x.type, text: fmt.fault(x.type)})));
    const prev = form.dataset.type;
    if (prev && types.some((x) => x.type === prev)) typeSel.value = prev;
    const chosen = types.find((x) => x.type === typeSel.value) || types[0];
    form.dataset.type = chosen.type;
    typeSel.onchange = () => { form.dataset.type = typeSel.value; renderForm(); };
    const targetSel = el("select", {id: "fault-target"}, ...targets(chosen).map(([v, label]) => el("option", {value: v, text: label})));
    const fields = chosen.params.filter((p) => p.name !== "schedule").map((p) => el("label", {title: `${p.name}: ${p.help}`},
      `${paramName(p.name)} `, el("input", {size: 8, "data-param": p.name,
        value: chosen.example[p.name] != null ? String(chosen.example[p.name]) : "",
        placeholder: p.required ? "" : (p.default != null ? String(p.default) : t("optional"))})));
    form.replaceChildren(
      el("label", null, `${t("faultType")} `, typeSel), el("label", null, `${t("target")} `, targetSel), ...fields,
      el("label", null, `${t("startsIn")} `, el("input", {id: "fault-at", size: 5, value: "0s"})),
      el("label", {title: "30m, 2h, 7d"}, `${t("within")} `, el("input", {id: "fault-within", size: 5, placeholder: t("optional")})),
      el("button", {type: "button", id: "fault-inject", text: t("inject"), onclick: inject}),
      el("span", {class: "muted small", text: `→ ${fmt.code(chosen.alert)}`}),
      el("div", {class: "bad small", id: "fault-error", text: error}));
  }

  async function inject() {
    const chosen = types.find((x) => x.type === document.getElementById("fault-type").value);
    const body = {type: chosen.type, station: id, at: document.getElementById("fault-at").value.trim() || "0s"};
    if (chosen.entity !== "station") body[chosen.entity] = document.getElementById("fault-target").value;
    for (const input of document.querySelectorAll("#fault-form [data-param]")) {
      if (input.value.trim() !== "") body[input.dataset.param] = value(input.value);
    }
    const within = document.getElementById("fault-within").value.trim();
    if (within) body.within = within;
    try {
      await postJSON(API, body);
      error = "";
    } catch (e) {
      let msg = e.message;
      try { msg = JSON.parse(msg); } catch (_) { /* plain text */ }
      error = `${t("failed")}${msg}`;
    }
    document.getElementById("fault-error").textContent = error;
    loadList();
  }

  function detection(f) {
    const d = f.detection;
    if (!d.acted) return [t("notActed"), "muted"];
    if (d.alert_id == null) return d.overdue ? [`${t("notYet")} · ${t("lateDeadline")}`, "bad"] : [t("notYet"), "muted"];
    const found = t("foundAfter").replace("{t}", span(d.time_to_detect_s));
    if (d.met === true) return [`${found} · ${t("metDeadline")}`, "ok"];
    if (d.met === false) return [`${found} · ${t("lateDeadline")}`, "bad"];
    return [found, "ok"];
  }

  async function loadList() {
    const list = await getJSON(`${API}?station=${encodeURIComponent(id)}`);
    if (!list) return;
    const head = el("tr", null, ...["faultType", "target", "params", "injectedAt", "began", "expectedAlert", "detection"]
      .map((k) => el("th", {text: t(k)})));
    const rows = list.slice().reverse().map((f) => {
      const [text, cls] = detection(f);
      const params = Object.entries(f.params).filter(([, v]) => v != null && typeof v !== "object").map(([k, v]) => `${paramName(k)} ${k === "for" || k === "duration" ? span(v) : v}`).join(", ");
      return el("tr", {"data-fault": String(f.id)}, el("td", {text: fmt.fault(f.type), title: f.type}),
        el("td", {text: f.entity || t("wholeStation")}), el("td", {text: params}),
        el("td", {text: fmt.time(f.at_ts)}), el("td", {text: fmt.time(f.first_active_ts)}),
        el("td", {text: fmt.code(f.alert), title: f.alert || ""}), el("td", {class: cls, "data-detection": "", text}));
    });
    document.getElementById("fault-list").replaceChildren(el("table", {class: "list"}, head,
      ...(rows.length ? rows : [el("tr", null, el("td", {colspan: "7", class: "muted", text: t("noneInjected")}))])));
  }

  async function start() {
    if (!(await FT.has(API))) return;
    const [ts, station] = await Promise.all([getJSON(`${API}/types`), getJSON(`/api/v1/stations/${encodeURIComponent(id)}`)]);
    if (!ts || !station) return;
    types = ts;
    spec = station;
    build();
    setInterval(loadList, 5000);  // the detections come as the twin finds them
    FT.onLang(build);
  }

  function build() {
    const type = document.getElementById("fault-form")?.dataset.type;
    panel.hidden = false;
    panel.replaceChildren(el("h2", {text: t("injectFaults")}), el("div", {class: "muted small", text: t("injectHint")}),
      el("div", {class: "fault-form", id: "fault-form", "data-type": type || ""}),
      el("h3", {class: "small", text: t("injected")}), el("div", {class: "scroll", id: "fault-list"}));
    renderForm();
    loadList();
  }
  start();
})();
