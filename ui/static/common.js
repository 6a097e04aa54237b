// fueltwin pages: what every page shares — language (zh-CN default, English switch), local number and
// time formats (万元, litres, Asia/Shanghai), the live websocket with reconnection, the replay banner,
// and fetch helpers that let a panel whose API is missing (a later issue not deployed) degrade to
// "no data" instead of failing. Data is always written with textContent, never innerHTML.
"use strict";

const FT = (() => {
  const TZ = "Asia/Shanghai";
  const I18N = {
    zh: {
      appTitle: "滨海新区加油站智慧监管数据大屏", wall: "数据大屏", station: "油站孪生", scenarios: "故障场景",
      replay: "回放", apiDocs: "接口", connecting: "连接中…", connected: "实时", reconnecting: "重连中 {s} 秒",
      dataTime: "数据时间", online: "在线", offline: "离线", stationsOnline: "在线油站", salesVolume: "今日销量",
      revenue: "今日销售额", openAlerts: "未关闭告警", deliveriesToday: "今日收油", receipts: "今日进油",
      documented: "有票", awaitingPaper: "待票", undocumented: "无票", byGrade: "分油品", grade: "油品", volume: "销量", amount: "金额",
      alertsByType: "告警类型", trend: "销售趋势", exportCsv: "导出表格", day: "日", month: "月", year: "年", regionRank: "区域排名", todayRevenue: "今日销售额",
      priceSpread: "油价分布（元/升）", ticker: "实时告警", noData: "暂无数据", noAlerts: "暂无告警",
      replayBanner: "回放模式 · 非实时数据", demoBanner: "演示模式 · 模拟数据", wan: "万元", yuan: "元",
      litre: "升", wanLitre: "万升", tanks: "油罐", nozzles: "油枪", transactions: "交易流水",
      deliveries: "收油记录", ledger: "进销存台账", alerts: "告警", vapor: "油气回收", inspections: "安全检查",
      observed: "实测", expected: "账面", divergence: "差值", water: "水位", temp: "油温", leakRate: "渗漏估计",
      capacity: "容量", divergence24h: "差值 24 小时", divergence7d: "差值 7 天", idle: "空闲",
      lifted: "提枪", fuelling: "加油中", finished: "完成", stale: "中断", ack: "确认", close: "关闭",
      open: "未处理", acknowledged: "已确认", closed: "已关闭", who: "请输入处理人姓名：", evidence: "证据",
      time: "时间", nozzle: "油枪", tank: "油罐", litres: "升数", price: "单价", txnNo: "流水号",
      start: "开始", end: "结束", net20: "净量 L（20 °C）", po: "采购单", trace: "溯源", failed: "操作失败：",
      info: "提示", warning: "警告", alarm: "报警", critical: "严重", meterFactor: "计量系数",
      backToWall: "返回大屏", region: "区域", address: "地址", watermark: "数据时间", events: "事件数",
      period: "周期", opening: "期初实测", receiptsDoc: "进油（有票）", receiptsDet: "进油（识别）", receiptsUndoc: "进油（无票）", dropBand: "收油",
      sales: "销售", closingBook: "期末账面", closingMeas: "期末实测", variance: "损溢", key: "期间",
      run: "运行", running: "运行中", done: "完成", error: "出错", report: "报告", expectations: "预期检测",
      met: "命中", missed: "未命中", timeToDetect: "检测用时", falseAlarms: "误报", file: "文件",
      estimate: "估计（末次 / 真值）", ciHolds: "95% 区间含真值", ciMisses: "95% 区间不含真值",
      duration: "时长", faults: "故障", expects: "预期", invalid: "文件有误", progress: "进度", openStation: "打开油站",
      passed: "通过", notAvailable: "此服务未提供", replayRange: "回放范围", speed: "倍速", pause: "暂停",
      resume: "继续", stop: "停止", stations: "油站", all: "全部", from: "从", to: "至", status: "状态",
      recorded: "已记录", sold: "售出", amountYuan: "金额 元", lph: "L/h",
      mode_live: "实时", mode_demo: "演示", mode_replay: "回放", events_s: "事件/秒",
      storeHolding: "存储中断 · 已暂存 {n} 条数据", storeDown: "存储不可用",
      meterAwaitFit: "约 2 天数据后给出", meterNoFit: "无数据",
      meter_few_nozzles: "不可分离（本罐足量销售的油枪不足 3 支，无法与罐容表误差区分）",
      meter_low_sales: "销量不足，暂不评估", meter_trend: "油罐差值有趋势，暂不评估",
      lot: "批次", supplier: "供应商", depot: "油库", volumeDoc: "票面量 L（20 °C）", invoice: "发票号",
      vehicle: "车辆", seals: "铅封", arrive: "到站", detected: "识别进油 L", drawn: "已售出 L",
      notMatched: "尚未匹配到收油", noPo: "未匹配采购单", share: "占比", shareNow: "当前罐内占比", remaining: "剩余 L",
      txns: "笔数", variancePct: "损溢率", partial: "未结", date: "日期",
      seeds: "随机种子数", seedsHint: "同一场景按连续种子重复运行，统计检出率与误报率",
      useCores: "进程数", stopped: "已停止", summary: "多种子汇总", pd: "检出率", detections: "检出",
      ttdMedian: "用时中位", ttdMax: "用时最大", perTankMonth: "每罐·月误报", tankMonths: "罐·月",
      seedsDone: "已完成种子", runs: "运行", stopFailed: "停止失败：", downloadReport: "下载报告（JSON）",
      divergenceShape: "差值曲线", deliveryMark: "卸油", divergenceAround: "{tank} 差值（升，{step} 分钟均值），竖线为告警时刻",
    },
    en: {
      appTitle: "Binhai fuel station supervision — live wall", wall: "Wall", station: "Station twin",
      scenarios: "Scenarios", replay: "Replay", apiDocs: "API", connecting: "Connecting…", connected: "Live",
      reconnecting: "Reconnecting in {s} s", dataTime: "Data time", online: "online", offline: "offline",
      stationsOnline: "Stations online", salesVolume: "Sales today", revenue: "Revenue today",
      openAlerts: "Open alerts", deliveriesToday: "Deliveries today", receipts: "Receipts today",
      documented: "documented", awaitingPaper: "paper pending", undocumented: "undocumented", byGrade: "By grade", grade: "Grade",
      volume: "Volume", amount: "Amount", alertsByType: "Alerts by type", trend: "Sales trend", exportCsv: "Export CSV", day: "Day",
      month: "Month", year: "Year", regionRank: "Regions", todayRevenue: "revenue today", priceSpread: "Posted prices (CNY/L)",
      ticker: "Live alerts", noData: "No data", noAlerts: "No alerts", replayBanner: "REPLAY · not live data",
      demoBanner: "Demo · simulated data", wan: "10k CNY", yuan: "CNY", litre: "L", wanLitre: "10k L",
      tanks: "Tanks", nozzles: "Nozzles", transactions: "Transactions", deliveries: "Deliveries",
      ledger: "Ledger", alerts: "Alerts", vapor: "Vapor recovery", inspections: "Inspections",
      observed: "Observed", expected: "Book", divergence: "Divergence", water: "Water", temp: "Temp.",
      leakRate: "Leak estimate", capacity: "Capacity", divergence24h: "Divergence 24 h",
      divergence7d: "Divergence 7 d", idle: "idle", lifted: "lifted", fuelling: "fuelling", finished: "finished",
      stale: "lost", ack: "Acknowledge", close: "Close", open: "open", acknowledged: "acknowledged",
      closed: "closed", who: "Your name:", evidence: "Evidence", time: "Time", nozzle: "Nozzle", tank: "Tank",
      litres: "Litres", price: "Price", txnNo: "Txn no.", start: "Start", end: "End", net20: "Net L at 20 °C",
      po: "Purchase order", trace: "Trace", failed: "Failed: ", info: "info", warning: "warning",
      alarm: "alarm", critical: "critical", meterFactor: "Meter factor", backToWall: "Back to wall",
      region: "Region", address: "Address", watermark: "Data time", events: "Events", period: "Period",
      opening: "Opening", receiptsDoc: "Receipts (doc.)", receiptsDet: "Receipts (detected)", receiptsUndoc: "Receipts (undoc.)", dropBand: "delivery", sales: "Sales",
      closingBook: "Closing book", closingMeas: "Closing measured", variance: "Variance", key: "Period",
      run: "Run", running: "running", done: "done", error: "error", report: "Report",
      expectations: "Expected detections", met: "met", missed: "missed", timeToDetect: "Time to detect",
      estimate: "Estimate (latest / truth)", ciHolds: "95% CI holds the truth", ciMisses: "95% CI misses the truth",
      falseAlarms: "False alarms", file: "File", duration: "Duration", faults: "Faults", expects: "Expects", invalid: "invalid",
      progress: "Progress", openStation: "Open station", passed: "passed", notAvailable: "not provided here",
      replayRange: "Range", speed: "Speed", pause: "Pause", resume: "Resume", stop: "Stop",
      stations: "Stations", all: "All", from: "From", to: "To", status: "Status", recorded: "Recorded",
      sold: "sold", amountYuan: "Amount CNY", lph: "L/h", mode_live: "live",
      mode_demo: "demo", mode_replay: "replay", events_s: "events/s",
      storeHolding: "Store unreachable · {n} events held", storeDown: "Store unavailable",
      meterAwaitFit: "after ~2 days of data", meterNoFit: "no data",
      meter_few_nozzles: "not separable from the tank chart (< 3 nozzles of this tank with enough sales)",
      meter_low_sales: "too few sales to judge", meter_trend: "tank divergence trends: not judged",
      lot: "Lot", supplier: "Supplier", depot: "Depot", volumeDoc: "Ordered L at 20 °C", invoice: "Invoice",
      vehicle: "Vehicle", seals: "Seals", arrive: "Arrived", detected: "Detected L", drawn: "Sold L",
      notMatched: "not matched to a delivery yet", noPo: "no purchase order matched", share: "Share",
      shareNow: "Share of tank now", remaining: "Remaining L", txns: "Txns", variancePct: "Variance %",
      partial: "open", date: "Date",
      seeds: "Seeds", seedsHint: "Repeat the scenario over consecutive seeds: probability of detection and false-alarm rate",
      useCores: "Processes", stopped: "stopped", summary: "Over all seeds", pd: "Pd", detections: "Detected",
      ttdMedian: "Median time", ttdMax: "Max time", perTankMonth: "False alarms per tank-month",
      tankMonths: "tank-months", seedsDone: "Seeds done", runs: "Runs", stopFailed: "Stop failed: ",
      downloadReport: "Download report (JSON)",
      divergenceShape: "Divergence", deliveryMark: "Delivery", divergenceAround: "{tank} divergence (L, {step}-minute means); the line marks the alert",
    },
  };
  const ALERT_CODES = {
    COMM_LOSS: ["数据中断", "Comm. loss"], DELIVERY_DETECTED: ["识别收油", "Delivery"],
    SENSOR_STUCK: ["液位仪冻结", "Gauge stuck"], WATER_HIGH: ["水位超限", "Water high"],
    OVERFILL: ["超安全液位", "Overfill"], SUDDEN_LOSS: ["油量骤减", "Sudden loss"],
    HIDDEN_SALES: ["疑似未记录销售", "Hidden sales"], LEAK: ["疑似渗漏", "Leak"],
    SENSOR_DRIFT: ["液位仪漂移", "Gauge drift"], METER_BIAS: ["计量偏差", "Meter bias"],
    TXN_GAP: ["流水跳号", "Txn gap"], TOTALIZER_MISMATCH: ["累计数不符", "Totalizer"],
    MAINBOARD_CHANGED: ["主板更换", "Mainboard"], TWIN_FAULT: ["孪生异常", "Twin fault"],
    VAPOR_AL_WARNING: ["气液比预警", "A/L warning"], VAPOR_AL_ALARM: ["气液比报警", "A/L alarm"],
    VAPOR_PRESSURE: ["油气系统压力异常", "Vapor pressure"], VAPOR_PROCESSOR: ["油气处理装置异常", "Vapor processor"],
    VAPOR_VOC: ["VOC 泄漏", "VOC leak"], GAS_LEL: ["可燃气体浓度", "Combustible gas"],
    INTERSTITIAL_LEAK: ["双层罐夹层渗漏", "Interstitial leak"], UNLOADING_UNGROUNDED: ["卸油未接地", "Unloading ungrounded"],
    UNSAFE_BEHAVIOUR: ["不安全行为", "Unsafe behaviour"], INSPECTION_FINDING: ["检查发现问题", "Inspection finding"],
    DELIVERY_UNDOCUMENTED: ["无票进油", "Undocumented delivery"], PO_UNDELIVERED: ["采购单未到货", "PO undelivered"],
    SALES_UNDERDECLARED: ["少报销售", "Sales under-declared"], INVOICE_MISMATCH: ["发票不符", "Invoice mismatch"],
    PRICE_DUMPING: ["低价倾销", "Price dumping"], CAPACITY_MISREPORT: ["罐容申报不实", "Capacity misreport"],
    HIDDEN_TANK: ["疑似隐蔽油罐", "Hidden tank"],
  };
  // Fault types of the scenario files (simulators FAULT_TYPES), as a tester reads them.
  const FAULT_TYPES = {
    leak: ["渗漏", "Leak"], theft: ["盗油", "Theft"], meter_bias: ["计量作弊", "Meter bias"],
    hidden_sales: ["隐藏销售", "Hidden sales"], totalizer_jump: ["累计数跳变", "Totalizer jump"],
    txn_gap: ["流水跳号", "Txn gap"], mainboard_swap: ["更换主板", "Mainboard swap"],
    sensor_stuck: ["液位仪冻结", "Gauge stuck"], sensor_drift: ["液位仪漂移", "Gauge drift"],
    comm_loss: ["通讯中断", "Comm. loss"], water_ingress: ["进水", "Water ingress"],
    capacity_misreport: ["虚报罐容", "Capacity misreport"], hidden_tank: ["隐蔽油罐", "Hidden tank"],
    delivery_without_po: ["无票进油", "Delivery without PO"], po_without_delivery: ["有票无油", "PO without delivery"],
    invoice_inflation: ["虚开发票", "Invoice inflation"], underdeclared_sales: ["少报销售", "Under-declared sales"],
    price_dumping: ["低价倾销", "Price dumping"], processor_off: ["处理装置停机", "Vapor processor off"],
    vapor_blockage: ["油气回收堵塞", "Vapor blockage"], vapor_unsealed: ["油气系统不密闭", "Vapor system unsealed"],
    voc_leak: ["VOC 泄漏", "VOC leak"],
  };
  const SEVERITY_RANK = {info: 1, warning: 2, alarm: 3, critical: 4};
  const COLORS = {ok: "#2ecc71", offline: "#6b7a90", info: "#3aa0ff", warning: "#f1c40f", alarm: "#ff8c1a",
                  critical: "#ff3b3b"};

  let lang = localStorage.getItem("fueltwin.lang") === "en" ? "en" : "zh";
  const langListeners = [];
  let fmtTime, fmtDate, fmtInt, fmt1, fmt2;

  function setFormats() {
    const locale = lang === "zh" ? "zh-CN" : "en-GB";
    fmtTime = new Intl.DateTimeFormat(locale, {timeZone: TZ, month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false});
    fmtDate = new Intl.DateTimeFormat(locale, {timeZone: TZ, year: "numeric", month: "2-digit",
      day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false});
    fmtInt = new Intl.NumberFormat(locale, {maximumFractionDigits: 0});
    fmt1 = new Intl.NumberFormat(locale, {minimumFractionDigits: 1, maximumFractionDigits: 1});
    fmt2 = new Intl.NumberFormat(locale, {minimumFractionDigits: 2, maximumFractionDigits: 2});
  }
  setFormats();

  function t(key, vars) {
    let s = (I18N[lang] && I18N[lang][key]) || I18N.zh[key] || key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replace(`{${k}}`, v);
    return s;
  }
  const fmt = {
    time: (ts) => ts == null ? "—" : fmtTime.format(new Date(ts * 1000)),
    datetime: (ts) => ts == null ? "—" : fmtDate.format(new Date(ts * 1000)),
    int: (v) => v == null ? "—" : fmtInt.format(v),
    n1: (v) => v == null ? "—" : fmt1.format(v),
    n2: (v) => v == null ? "—" : fmt2.format(v),
    // Money: 万元 in Chinese (the bureaus' unit), CNY in English.
    money: (cny) => cny == null ? "—" : lang === "zh" ? `${fmt2.format(cny / 1e4)} 万元` : `¥${fmtInt.format(cny)}`,
    moneyValue: (cny) => lang === "zh" ? cny / 1e4 : cny,
    moneyUnit: () => lang === "zh" ? "万元" : "CNY",
    litres: (l) => l == null ? "—" : lang === "zh" && Math.abs(l) >= 1e5 ? `${fmt2.format(l / 1e4)} 万升`
      : `${fmtInt.format(l)} ${lang === "zh" ? "升" : "L"}`,
    signed: (v, digits) => v == null ? "—" : (v > 0 ? "+" : "") + v.toFixed(digits),
    code: (c) => (ALERT_CODES[c] || [c, c])[lang === "zh" ? 0 : 1],
    fault: (f) => (FAULT_TYPES[f] || [f, f])[lang === "zh" ? 0 : 1],
  };
  // Local calendar day (Asia/Shanghai, UTC+8, no daylight saving) of an event time.
  function localDay(ts) { return new Date((ts + 8 * 3600) * 1000).toISOString().slice(0, 10); }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }

  // GET JSON; null when the endpoint does not exist here (404/405/501/503) or the network fails, so a
  // panel can say "no data" rather than break the page.
  async function getJSON(url) {
    try {
      const r = await fetch(url, {headers: {Accept: "application/json"}});
      if (!r.ok) return null;
      return await r.json();
    } catch (e) {
      return null;
    }
  }
  async function postJSON(url, body) {
    const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                                body: JSON.stringify(body || {})});
    let data = null;
    try { data = await r.json(); } catch (e) { /* no body */ }
    if (!r.ok) throw new Error((data && data.detail) ? JSON.stringify(data.detail) : `HTTP ${r.status}`);
    return data;
  }

  // Which API paths this server has (later issues add some): panels whose endpoint is missing are
  // hidden without a request that would 404.
  let pathsPromise = null;
  function paths() {
    if (!pathsPromise) {
      pathsPromise = getJSON("/openapi.json").then((o) => new Set(Object.keys((o && o.paths) || {})));
    }
    return pathsPromise;
  }
  async function has(path) { return (await paths()).has(path); }

  function applyI18n(root) {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    for (const node of (root || document).querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  }
  function setLang(next) {
    lang = next;
    localStorage.setItem("fueltwin.lang", lang);
    setFormats();
    applyI18n();
    const b = document.getElementById("lang");
    if (b) b.textContent = lang === "zh" ? "EN" : "中文";
    for (const f of langListeners) f(lang);
  }

  // The live websocket. Reconnects by itself with exponential backoff (0.5 s doubling to 30 s, with
  // jitter so a wall of screens does not reconnect in step) and resets the backoff once a hello arrives.
  class Live {
    constructor(onMessage, {stations = null, statusEl = null} = {}) {
      this.onMessage = onMessage;
      this.stations = stations;
      this.statusEl = statusEl;
      this.attempt = 0;
      this.ws = null;
      this.connects = 0;
      this.timer = null;
      this.connect();
    }
    url() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const q = this.stations ? `?stations=${encodeURIComponent(this.stations.join(","))}` : "";
      return `${proto}//${location.host}/ws/live${q}`;
    }
    status(cls, text) {
      if (!this.statusEl) return;
      this.statusEl.className = `conn ${cls}`;
      this.statusEl.textContent = text;
    }
    connect() {
      this.timer = null;
      this.status("down", t("connecting"));
      const ws = new WebSocket(this.url());
      this.ws = ws;
      ws.onmessage = (ev) => {
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (msg.type === "hello") {
          this.attempt = 0;
          this.connects += 1;
          this.status("up", t("connected"));
        }
        this.onMessage(msg);
      };
      ws.onclose = () => {
        if (this.ws !== ws) return;
        this.ws = null;
        const delay = Math.min(30, 0.5 * 2 ** this.attempt) * (0.75 + Math.random() * 0.5);
        this.attempt = Math.min(this.attempt + 1, 10);
        this.status("down", t("reconnecting", {s: Math.ceil(delay)}));
        this.timer = setTimeout(() => this.connect(), delay * 1000);
      };
      ws.onerror = () => { /* onclose follows */ };
    }
  }

  // Header: navigation, mode banner (replay/demo), data time, connection and language switch.
  function header(active) {
    const nav = el("nav", {class: "nav"},
      ...[["/", "wall"], ["/scenarios", "scenarios"], ["/replay", "replay"], ["/docs", "apiDocs"]].map(
        ([href, key]) => el("a", {href, "data-i18n": key, class: key === active ? "active" : null}, t(key))));
    const btn = el("button", {id: "lang", type: "button", onclick: () => setLang(lang === "zh" ? "en" : "zh")},
                   lang === "zh" ? "EN" : "中文");
    const bar = el("header", {class: "top"},
      el("h1", {id: "title", "data-i18n": active === "wall" ? "appTitle" : active, class: "title"}),
      nav,
      el("span", {class: "spacer"}),
      el("span", {id: "banner", class: "banner", hidden: ""}),
      el("span", {class: "muted"}, el("span", {"data-i18n": "dataTime"}), " ", el("span", {id: "data-time"}, "—")),
      el("span", {id: "store", class: "banner store", hidden: ""}),
      el("span", {id: "conn", class: "conn down"}, t("connecting")),
      btn);
    document.body.prepend(bar);
    applyI18n(bar);
    watchStore();
    return bar;
  }

  // Whether Redis takes the twin's writes (GET /health: 503 with writes.state "holding" while it is
  // away). The twin stays live meanwhile, but what people read from the store (alerts, history) is
  // stale and their actions fail: the header says so. Polled: the websocket carries the twin, not
  // the store's health.
  const STORE_POLL_MS = 5000;
  let storeHealth = null;
  function showStore() {
    const b = document.getElementById("store");
    if (!b) return;
    const w = storeHealth && storeHealth.writes;
    const holding = !!(w && w.state === "holding");
    const down = !!(storeHealth && storeHealth.store_error);
    b.hidden = !(holding || down);
    b.textContent = holding ? t("storeHolding", {n: fmt.int(w.pending_events)}) : down ? t("storeDown") : "";
  }
  function watchStore() {
    const poll = async () => {
      try {
        const r = await fetch("/api/v1/health", {headers: {Accept: "application/json"}});
        storeHealth = await r.json();
      } catch (e) {
        storeHealth = null;  // the server itself is away: the connection badge says so
      }
      showStore();
      setTimeout(poll, STORE_POLL_MS);
    };
    langListeners.push(showStore);
    poll();
  }
  function setMode(mode, replay) {
    const b = document.getElementById("banner");
    if (!b) return;
    const isReplay = mode === "replay" || (replay && replay.state && replay.state !== "idle");
    b.hidden = !(isReplay || mode === "demo");
    b.className = isReplay ? "banner replay" : "banner demo";
    b.dataset.i18n = isReplay ? "replayBanner" : "demoBanner";
    b.textContent = t(b.dataset.i18n);
    document.body.classList.toggle("replaying", !!isReplay);
  }
  function setDataTime(ts) {
    const n = document.getElementById("data-time");
    if (n && ts != null) n.textContent = fmt.time(ts);
  }

  return {TZ, I18N, COLORS, SEVERITY_RANK, t, fmt, el, getJSON, postJSON, has, applyI18n, setLang, Live, header,
          setMode, setDataTime, localDay, lang: () => lang, onLang: (f) => langListeners.push(f)};
})();
