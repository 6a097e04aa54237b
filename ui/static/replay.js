// Replay: not built yet (see the README). The page says so instead of pretending.
"use strict";

(() => {
  FT.header("replay");
  const main = document.getElementById("main");
  main.append(FT.el("section", {class: "panel"}, FT.el("h2", {"data-i18n": "replay"}),
    FT.el("p", {id: "replay-status", class: "muted",
      text: FT.lang() === "zh" ? "回放功能尚未实现：需要从 Redis 输入日志（ft:log:{站}）按事件时间重放到新的孪生体。"
        : "Replay is not implemented yet: it needs the Redis input log (ft:log:{station}) replayed into a fresh twin in event time."})));
  FT.applyI18n();
  new FT.Live((m) => { if (m.type === "hello") FT.setMode(m.mode); }, {statusEl: document.getElementById("conn")});
})();
