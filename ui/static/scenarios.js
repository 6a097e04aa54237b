// Scenarios: the files in scenarios/, run one in a background process (progress by simulated day), and
// its report: each expected detection met or missed with its time to detect and, where the truth can
// score it, the alert's estimate; every false alarm.
"use strict";

(() => {
  const {t, fmt, el, getJSON, postJSON} = FT;
  FT.header("scenarios");
  const main = document.getElementById("main");
  const listBox = el("section", {class: "panel"}, el("h2", {"data-i18n": "scenarios"}), el("div", {class: "scroll", id: "files"}));
  const runBox = el("section", {class: "panel", id: "run"}, el("h2", {"data-i18n": "report"}), el("div", {id: "report", class: "muted", text: "—"}));
  main.append(listBox, runBox);
  let current = null, known = new Set();

  function dur(s) { return s == null ? "—" : s >= 86400 ? `${(s / 86400).toFixed(2)} d` : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`; }

  async function loadFiles() {
    const d = await getJSON("/api/v1/scenarios");
    const box = document.getElementById("files");
    if (!d) { box.textContent = t("noData"); return; }
    const hello = await getJSON("/api/v1/stations");
    known = new Set((hello || []).map((s) => s.id));
    const head = el("tr", null, ...["file", "duration", "stations", "faults", "expects", ""].map((k) => el("th", {text: k ? t(k) : ""})));
    box.replaceChildren(el("table", {class: "list"}, head, ...d.files.map((f) => el("tr", {"data-file": f.file},
      el("td", null, el("b", {text: f.name || f.file}), el("div", {class: "small muted", text: f.file})),
      el("td", {text: f.duration || "—"}), el("td", {text: f.stations ?? "—"}),
      el("td", {text: (f.faults || []).join(", ") || "—"}),
      el("td", {text: (f.expects || []).map((e) => `${e.alert} ≤ ${e.within}`).join(", ") || "—"}),
      el("td", null, f.valid ? el("button", {type: "button", "data-run": f.file, text: t("run"), onclick: () => start(f.file)}) : el("span", {class: "bad", text: "invalid"}))))));
  }

  async function start(file) {
    try {
      current = (await postJSON(`/api/v1/scenarios/${encodeURIComponent(file)}/run`)).id;
      poll();
    } catch (e) {
      document.getElementById("report").textContent = t("failed") + e.message;
    }
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

  function renderRun(r) {
    const box = document.getElementById("report");
    box.className = "";
    const pct = r.days ? Math.min(100, 100 * r.day / r.days) : r.status === "done" ? 100 : 0;
    const parts = [el("div", null, el("b", {text: r.file}), " ", el("span", {class: "status-pill", "data-status": r.status, text: t(r.status)}),
      " ", el("span", {class: "muted small", text: r.days ? `${r.day.toFixed(1)} / ${r.days} d` : ""})),
      el("div", {class: "run-bar"}, el("i", {style: `width:${pct}%`}))];
    if (r.error) parts.push(el("pre", {class: "bad small", text: r.error}));
    const rep = r.report;
    if (rep) {
      for (const run of rep.runs) {
        parts.push(el("h2", null, el("span", {text: `${run.scenario} · seed ${run.seed}`}),
          el("span", {class: run.passed ? "ok" : "bad", "data-passed": String(run.passed), text: run.passed ? t("passed") : "FAILED"})));
        parts.push(el("table", {class: "list"}, el("tr", null, ...["expectations", "stations", "met", "timeToDetect", "estimate"].map((k) => el("th", {text: t(k)}))),
          ...run.expectations.map((e) => el("tr", null, el("td", {text: e.alert}),
            el("td", null, stationLink(e.station), e.entity ? ` / ${e.entity}` : ""),
            el("td", {class: e.met ? "ok" : "bad", text: e.met ? t("met") : t("missed")}),
            el("td", {text: dur(e.time_to_detect_s)}), estimateCell(e.estimate)))));
        parts.push(el("div", null, el("b", {text: `${t("falseAlarms")}: ${run.false_alarms.length}`})));
        if (run.false_alarms.length) {
          parts.push(el("table", {class: "list"}, ...run.false_alarms.slice(0, 50).map((a) => el("tr", null,
            el("td", {text: a.code}), el("td", null, stationLink(a.station)), el("td", {text: a.entity || ""}),
            el("td", {text: fmt.datetime(a.first_ts)})))));
        }
        const fig = run.figures || {};
        parts.push(el("div", {class: "small muted", text: `${fmt.int(fig.events)} events · ${fig.wall_s} s · ${fmt.int(fig.events_per_s)} ${t("events_s")}`}));
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
