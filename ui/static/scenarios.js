// Scenarios: the files in scenarios/, run one over one or many seeds in a background process (progress
// by simulated day and seeds done; a run can be stopped), and its report: over many seeds each expected
// detection's probability of detection and the false alarms per tank-month; per seed each expectation
// met or missed with its time to detect and, where the truth can score it, the alert's estimate; every
// false alarm, each detection and false alarm with its tank's divergence around it.
"use strict";

(() => {
  const {t, fmt, el, getJSON, postJSON} = FT;
  FT.header("scenarios");
  const main = document.getElementById("main");
  const seedsIn = el("input", {type: "number", id: "seeds", min: "1", max: "50", value: "1", style: "width:4rem"});
  const jobsIn = el("input", {type: "number", id: "jobs", min: "1", max: "1", value: "1", style: "width:3rem"});
  const options = el("div", {class: "small run-options"},
    el("label", null, el("span", {"data-i18n": "seeds"}), " ", seedsIn), " ",
    el("label", null, el("span", {"data-i18n": "useCores"}), " ", jobsIn), " ",
    el("span", {class: "muted", "data-i18n": "seedsHint"}));
  const listBox = el("section", {class: "panel"}, el("h2", {"data-i18n": "scenarios"}), options, el("div", {class: "scroll", id: "files"}));
  const runBox = el("section", {class: "panel", id: "run"}, el("h2", {"data-i18n": "report"}), el("div", {id: "report", class: "muted", text: "—"}));
  main.append(listBox, runBox);
  let current = null, known = new Set(), reportUrl = null;

  function dur(s) { return s == null ? "—" : s >= 86400 ? `${(s / 86400).toFixed(2)} d` : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`; }

  async function loadFiles() {
    const d = await getJSON("/api/v1/scenarios");
    const box = document.getElementById("files");
    if (!d) { box.textContent = t("noData"); return; }
    seedsIn.max = String(d.max_seeds ?? 50);
    jobsIn.max = String(d.max_jobs ?? 1);
    const hello = await getJSON("/api/v1/stations");
    known = new Set((hello || []).map((s) => s.id));
    const head = el("tr", null, ...["file", "duration", "stations", "faults", "expects", ""].map((k) => el("th", {text: k ? t(k) : ""})));
    box.replaceChildren(el("table", {class: "list"}, head, ...d.files.map((f) => el("tr", {"data-file": f.file},
      el("td", {title: f.description || ""}, el("b", {text: f.name || f.file}), el("div", {class: "small muted", text: f.file})),
      el("td", {text: f.duration || "—"}), el("td", {text: f.stations ?? "—"}),
      // in the reader's language, the file's own words (type, alert code) on hover
      el("td", {text: (f.faults || []).map(fmt.fault).join("、") || "—", title: (f.faults || []).join(", ")}),
      el("td", {text: (f.expects || []).map((e) => `${fmt.code(e.alert)} ≤ ${e.within}`).join("、") || "—",
                title: (f.expects || []).map((e) => `${e.alert} ≤ ${e.within}`).join(", ")}),
      el("td", null, f.valid ? el("button", {type: "button", "data-run": f.file, text: t("run"), onclick: () => start(f.file)})
        : el("span", {class: "bad", text: t("invalid"), title: f.error || ""}))))));
  }

  async function start(file) {
    try {
      const body = {seeds: Number(seedsIn.value) || 1, jobs: Number(jobsIn.value) || 1};
      current = (await postJSON(`/api/v1/scenarios/${encodeURIComponent(file)}/run`, body)).id;
      poll();
    } catch (e) {
      document.getElementById("report").textContent = t("failed") + e.message;
    }
  }

  async function stop(id) {
    try {
      renderRun(await postJSON(`/api/v1/scenarios/runs/${id}/stop`));
    } catch (e) {
      document.getElementById("report").prepend(el("div", {class: "bad small", text: t("stopFailed") + e.message}));
    }
  }

  // Over several seeds: each expectation's detections / trials, Pd and times; false alarms per tank-month.
  function summaryParts(summary) {
    const parts = [el("h2", {"data-i18n": "summary", text: t("summary")})];
    for (const s of summary.scenarios) {
      const fa = s.false_alarms;
      parts.push(el("table", {class: "list", "data-summary": s.scenario},
        el("tr", null, ...["expectations", "stations", "detections", "pd", "ttdMedian", "ttdMax"].map((k) => el("th", {text: t(k)}))),
        ...s.expectations.map((e) => el("tr", {"data-alert": e.alert},
          el("td", {text: `${e.alert} ≤ ${dur(e.within_s)}`}), el("td", {text: (e.where || []).join(", ")}),
          el("td", {"data-detections": `${e.detections}/${e.trials}`, text: `${e.detections}/${e.trials}`}),
          el("td", {class: e.pd >= 0.95 ? "ok" : "bad", "data-pd": String(e.pd), text: e.pd == null ? "—" : e.pd.toFixed(2)}),
          el("td", {text: dur(e.ttd_median_s)}), el("td", {text: dur(e.ttd_max_s)})))));
      parts.push(el("div", {"data-false-alarms": String(fa.count)},
        el("b", {text: `${t("falseAlarms")}: ${fa.count}`}),
        el("span", {class: "muted small", text: ` · ${fa.tank_months} ${t("tankMonths")} · ${t("perTankMonth")} ${fa.per_tank_month.toFixed(3)} · ${t("runs")} ${s.passed_runs}/${s.runs} ${t("passed")}`})));
    }
    return parts;
  }

  function stationLink(s) {
    return known.has(s) ? el("a", {href: `/station/${s}`, text: s, title: t("openStation")}) : el("span", {text: s});
  }

  // What the alert estimated against what the simulator injected (the runner's `estimate`, e.g. a leak's
  // rate): the last refresh, the truth, the error, and whether the alert's 95 % interval held the truth.
  function estimateCell(est) {
    if (!est) return el("td", {class: "muted", text: "—"});
    const x = est.latest, holds = x.ci95_holds_truth;
    return el("td", {"data-estimate": est.quantity},
      `${x.value.toFixed(3)} / ${est.true} ${est.quantity} (${x.error_pct >= 0 ? "+" : ""}${x.error_pct.toFixed(1)}%)`,
      holds == null ? "" : el("div", {class: "small", "data-ci-holds": String(holds), text: t(holds ? "ciHolds" : "ciMisses")}));
  }

  // The tank's divergence around an alert (the report's 10-minute means, ≤ 300 points), drawn when the
  // reader opens it: a chart inside a closed <details> has no width to draw in. A delivery reads as a
  // rise of thousands of litres until the twin books it (≈ 10 min after the drop settles): its span is
  // shaded, and the y axis fits the other points, so a 60 L step stays visible next to it.
  const BOOKING_S = 1800;
  function divergenceCell(d, alertTs) {
    if (!d) return el("td", {class: "muted", text: "—"});
    const box = el("div", {class: "div-shape", "data-chart": ""});
    const det = el("details", {"data-divergence": d.tank, "data-points": String(d.ts.length)},
      el("summary", {class: "small", text: t("divergenceShape")}), box);
    det.addEventListener("toggle", () => {
      if (!det.open || box.dataset.drawn) return;
      box.dataset.drawn = "1";
      const spans = d.deliveries || [];
      const inDelivery = (ts) => spans.some(([a, b]) => ts >= a - d.step_s && ts <= b + BOOKING_S);
      const kept = d.divergence_l.filter((v, i) => !inDelivery(d.ts[i]));
      const lo = Math.min(...kept), hi = Math.max(...kept), pad = Math.max(5, 0.1 * (hi - lo));
      const days = (d.to_ts - d.from_ts) > 2 * 86400;
      echarts.init(box).setOption({animation: false, grid: {left: 48, right: 10, top: 22, bottom: 22}, tooltip: {trigger: "axis"},
        title: {text: t("divergenceAround", {tank: d.tank, step: Math.round(d.step_s / 60)}),
                textStyle: {color: "#8aa0b8", fontSize: 11, fontWeight: "normal"}, left: 0, top: 0},
        xAxis: {type: "time", splitNumber: 4, axisLabel: {color: "#8aa0b8", fontSize: 10, hideOverlap: true,
                formatter: (v) => days ? fmt.time(v / 1000).slice(0, -3).replace(",", "") : fmt.time(v / 1000).slice(-8, -3)},
                axisLine: {lineStyle: {color: "#2a4466"}}},
        yAxis: {type: "value", min: kept.length ? Math.floor(lo - pad) : null, max: kept.length ? Math.ceil(hi + pad) : null,
                axisLabel: {color: "#8aa0b8", fontSize: 10}, splitLine: {lineStyle: {color: "#1b3050"}}},
        series: [{type: "line", symbol: "none", data: d.ts.map((x, i) => [x * 1000, d.divergence_l[i]]),
                  lineStyle: {color: "#f1c40f", width: 1.5},
                  markLine: {symbol: "none", silent: true, lineStyle: {color: "#e74c3c", type: "dashed"}, label: {show: false},
                             data: [{xAxis: alertTs * 1000}]},
                  markArea: {silent: true, itemStyle: {color: "rgba(58,160,255,0.15)"},
                             label: {color: "#8aa0b8", fontSize: 10},
                             data: spans.map(([a, b]) => [{xAxis: a * 1000, name: t("deliveryMark")}, {xAxis: (b + BOOKING_S) * 1000}])}}]});
    });
    return el("td", null, det);
  }

  function renderRun(r) {
    const box = document.getElementById("report");
    box.className = "";
    const many = (r.seeds || 1) > 1;
    const pct = r.status === "done" ? 100 : Math.min(100, 100 * (r.progress || 0));
    const where = many ? `${t("seedsDone")} ${r.seeds_done} / ${r.seeds}` : r.days ? `${r.day.toFixed(1)} / ${r.days} d` : "";
    const parts = [el("div", null, el("b", {text: r.file}), " ", el("span", {class: "status-pill", "data-status": r.status, text: t(r.status)}),
      " ", el("span", {class: "muted small", "data-where": "", text: where}),
      r.status === "running" ? el("button", {type: "button", "data-stop": r.id, text: t("stop"), onclick: () => stop(r.id)}) : null),
      el("div", {class: "run-bar"}, el("i", {style: `width:${pct}%`}))];
    if (r.error) parts.push(el("pre", {class: "bad small", text: r.error}));
    const rep = r.report;
    if (rep) {
      // The same JSON the command line writes with --report, to keep with the tester's records.
      if (reportUrl) URL.revokeObjectURL(reportUrl);
      reportUrl = URL.createObjectURL(new Blob([JSON.stringify(rep, null, 1)], {type: "application/json"}));
      parts.push(el("div", {class: "small"}, el("a", {href: reportUrl, "data-download": "",
        download: `${r.file.replace(/\.ya?ml$/, "")}-${r.id}.json`, text: t("downloadReport")})));
      if (many && rep.summary) parts.push(...summaryParts(rep.summary));
      for (const run of rep.runs) {
        const head = el(many ? "summary" : "h2", null, el("span", {text: `${run.scenario} · seed ${run.seed} `}),
          el("span", {class: run.passed ? "ok" : "bad", "data-passed": String(run.passed), text: run.passed ? t("passed") : "FAILED"}));
        const section = [];
        section.push(el("table", {class: "list"}, el("tr", null, ...["expectations", "stations", "met", "timeToDetect", "estimate", "divergenceShape"].map((k) => el("th", {text: t(k)}))),
          ...run.expectations.map((e) => el("tr", null, el("td", {text: e.alert}),
            el("td", null, stationLink(e.station), e.entity ? ` / ${e.entity}` : ""),
            el("td", {class: e.met ? "ok" : "bad", text: e.met ? t("met") : t("missed")}),
            el("td", {text: dur(e.time_to_detect_s)}), estimateCell(e.estimate),
            divergenceCell(e.divergence, e.detected_ts)))));
        section.push(el("div", null, el("b", {text: `${t("falseAlarms")}: ${run.false_alarms.length}`})));
        if (run.false_alarms.length) {
          section.push(el("table", {class: "list"}, ...run.false_alarms.slice(0, 50).map((a) => el("tr", null,
            el("td", {text: a.code}), el("td", null, stationLink(a.station)), el("td", {text: a.entity || ""}),
            el("td", {text: fmt.datetime(a.first_ts)}),
            el("td", {class: "small", "data-message": "", text: (FT.lang() === "zh" ? a.message_zh : a.message_en) || ""}),
            divergenceCell(a.divergence, a.first_ts)))));
        }
        const fig = run.figures || {};
        section.push(el("div", {class: "small muted", text: `${fmt.int(fig.events)} events · ${fig.wall_s} s · ${fmt.int(fig.events_per_s)} ${t("events_s")}`}));
        parts.push(...(many ? [el("details", {"data-seed": String(run.seed)}, head, ...section)] : [head, ...section]));
      }
    }
    box.replaceChildren(...parts);
  }

  async function poll() {
    if (!current) return;
    const r = await getJSON(`/api/v1/scenarios/runs/${current}`);
    if (r) renderRun(r);
    if (r && r.status === "running") setTimeout(poll, 1000);
  }

  FT.applyI18n();
  FT.onLang(() => { loadFiles(); poll(); });
  loadFiles();
  new FT.Live((m) => { if (m.type === "hello") FT.setMode(m.mode); }, {statusEl: document.getElementById("conn")});
})();
