// Replay: pick stations, a recorded range and a speed; start, pause, resume, stop. The wall display and
// the station pages of this server show the replay twin (the banner says so). On a live or demo server
// the page says how to start a replay server (`fueltwin replay`), since the live twin must not be
// overwritten.
"use strict";

(() => {
  FT.header("replay");
  const T = {
    zh: {range: "可回放范围", stations: "站点（不选为全部）", from: "开始", to: "结束", speed: "倍速",
         max: "最快", settings: "阈值设置（JSON，可空）", settingsUsed: "阈值设置",
         badSettings: "阈值设置不是 JSON 对象", start: "开始回放", pause: "暂停", resume: "继续", stop: "停止",
         state: "状态",
         simTime: "回放时间", progress: "进度", events: "事件数", rate: "速率",
         notHere: "此服务是实时/演示孪生体。回放在单独的回放服务中进行，避免覆盖实时数据：",
         states: {idle: "未开始", "catching-up": "追赶历史", running: "回放中", paused: "已暂停", done: "完成",
                  stopped: "已停止", failed: "失败"}},
    en: {range: "Recorded range", stations: "Stations (none = all)", from: "From", to: "To", speed: "Speed",
         max: "max", settings: "Thresholds (JSON, optional)", settingsUsed: "Thresholds",
         badSettings: "Thresholds are not a JSON object", start: "Start replay", pause: "Pause",
         resume: "Resume", stop: "Stop", state: "State",
         simTime: "Replay time", progress: "Progress", events: "Events", rate: "Rate",
         notHere: "This server runs the live or demo twin. Replays run in a separate replay server, so that "
                  + "the live data are never overwritten:",
         states: {idle: "idle", "catching-up": "catching up on history", running: "running", paused: "paused",
                  done: "done", stopped: "stopped", failed: "failed"}},
  };
  const tr = (k) => T[FT.lang()][k];
  const main = document.getElementById("main");
  const panel = FT.el("section", {class: "panel"});
  main.append(panel);

  // datetime-local in Asia/Shanghai (UTC+8) <-> epoch seconds
  const toLocal = (ts) => new Date((ts + 8 * 3600) * 1000).toISOString().slice(0, 16);
  const fromLocal = (s) => Date.parse(`${s}:00Z`) / 1000 - 8 * 3600;

  let timer = null;
  async function render() {
    if (timer) clearInterval(timer);
    panel.replaceChildren(FT.el("h2", {"data-i18n": "replay"}, FT.t("replay")));
    if (!(await FT.has("/api/v1/replay"))) {
      // this server's own recording (its data folder, prefix and the next port), as it tells
      const health = await FT.getJSON("/api/v1/health");
      panel.append(FT.el("p", {id: "replay-status", class: "muted", text: tr("notHere")}),
                   FT.el("pre", {id: "replay-command",
                                 text: (health && health.replay_command) || "fueltwin replay --data ./fueltwin-data --port 8001"}));
      return;
    }
    const range = await FT.getJSON("/api/v1/replay/range") || {stations: {}};
    const ids = Object.keys(range.stations).sort();
    // The recorded stations by name as well as id (the district's list; an id it lacks stays bare).
    const names = new Map(((await FT.getJSON("/api/v1/stations")) || []).map((s) => [s.id, s.name]));
    const select = FT.el("select", {id: "replay-stations", multiple: "", size: Math.min(8, ids.length || 1)},
      ...ids.map((id) => FT.el("option", {value: id, text: names.has(id) ? `${id} · ${names.get(id)}` : id})));
    const from = FT.el("input", {id: "replay-from", type: "datetime-local",
                                 value: range.first_ts ? toLocal(range.first_ts) : ""});
    const to = FT.el("input", {id: "replay-to", type: "datetime-local",
                               value: range.last_ts ? toLocal(range.last_ts) : ""});
    const speed = FT.el("select", {id: "replay-speed"},
      ...[1, 10, 60, 600, 3600].map((v) => FT.el("option", {value: v, text: `×${v}`})),
      FT.el("option", {value: "max", text: tr("max")}));
    speed.value = "60";
    // Detector thresholds to replay with (twin/settings.py fields); the server names a misspelt one.
    const settings = FT.el("input", {id: "replay-settings", type: "text", spellcheck: "false",
                                     placeholder: '{"loss_threshold_l": 20}'});
    const status = FT.el("div", {id: "replay-status", class: "kv"});
    // A refused request's reason stays until the next action (the status is redrawn every second).
    const problem = FT.el("p", {id: "replay-error", class: "error"});
    const act = (path, body) => async () => {
      try {
        await FT.postJSON(path, body && body());
        problem.textContent = "";
      } catch (e) { problem.textContent = e.message || String(e); }
      poll();
    };
    const parseSettings = () => {
      if (!settings.value.trim()) return {};
      let value = null;
      try { value = JSON.parse(settings.value); } catch (e) { value = null; }
      if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error(tr("badSettings"));
      return value;
    };
    const startBody = () => ({
      stations: [...select.selectedOptions].map((o) => o.value),
      start_ts: from.value ? fromLocal(from.value) : null, end_ts: to.value ? fromLocal(to.value) : null,
      speed: speed.value === "max" ? null : Number(speed.value), settings: parseSettings()});
    panel.append(
      FT.el("p", {class: "muted", text: `${tr("range")}: ${FT.fmt.datetime(range.first_ts)} — `
                                        + `${FT.fmt.datetime(range.last_ts)}`}),
      FT.el("div", {class: "replay-form"},
        FT.el("label", {for: "replay-stations", text: tr("stations")}), select,
        FT.el("label", {for: "replay-from", text: tr("from")}), from,
        FT.el("label", {for: "replay-to", text: tr("to")}), to,
        FT.el("label", {for: "replay-speed", text: tr("speed")}), speed,
        FT.el("label", {for: "replay-settings", text: tr("settings")}), settings),
      FT.el("div", {class: "buttons"},
        FT.el("button", {id: "replay-start", type: "button", onclick: act("/api/v1/replay", startBody)},
              tr("start")),
        FT.el("button", {id: "replay-pause", type: "button", onclick: act("/api/v1/replay/pause")}, tr("pause")),
        FT.el("button", {id: "replay-resume", type: "button", onclick: act("/api/v1/replay/resume")},
              tr("resume")),
        FT.el("button", {id: "replay-stop", type: "button", onclick: act("/api/v1/replay/stop")}, tr("stop"))),
      problem, status);
    speed.addEventListener("change", () => FT.postJSON("/api/v1/replay/speed",
      {speed: speed.value === "max" ? null : Number(speed.value)}).catch(() => {}));

    async function poll() {
      const s = await FT.getJSON("/api/v1/replay");
      if (!s) return;
      FT.setMode("replay", s);
      FT.setDataTime(s.sim_ts);
      status.replaceChildren(
        ...[[tr("state"), tr("states")[s.state] || s.state], [tr("simTime"), FT.fmt.datetime(s.sim_ts)],
            [tr("progress"), `${Math.round(100 * s.progress)} %`], [tr("events"), FT.fmt.int(s.events)],
            [tr("rate"), s.events_per_s == null ? "—" : `${FT.fmt.int(s.events_per_s)} ${FT.t("events_s")}`]]
          .map(([k, v]) => FT.el("div", {}, FT.el("span", {class: "muted", text: `${k} `}),
                                  FT.el("b", {"data-state": k === tr("state") ? s.state : null, text: v}))),
        ...(Object.keys(s.settings || {}).length
          ? [FT.el("div", {class: "wide"}, FT.el("span", {class: "muted", text: `${tr("settingsUsed")} `}),
                   FT.el("code", {id: "replay-settings-used", text: JSON.stringify(s.settings)}))] : []),
        ...(s.error ? [FT.el("p", {class: "error", text: s.error})] : []));
    }
    poll();
    timer = setInterval(poll, 1000);
  }

  render();
  FT.onLang(render);
  FT.applyI18n();
  new FT.Live((m) => { if (m.type === "hello") FT.setMode(m.mode); }, {statusEl: document.getElementById("conn")});
})();
