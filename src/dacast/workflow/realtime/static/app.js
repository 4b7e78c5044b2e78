// The real-time page: polls /api/status every second and shows the newest issue of the products folder.
// No libraries; every string from the server goes into the page as text (never as HTML).
"use strict";

const POLL_MS = 1000;       // status poll period
const FRAME_MS = 400;       // animation: one frame per FRAME_MS
const DWELL_FRAMES = 3;     // ... and the last frame held this many periods longer
const ANIMATED = new Set(["forecast", "convlstm", "probability"]);
const WARN_KINDS = new Set(["rejected", "missing", "late", "skipped", "restart", "diverged"]);
const RELIEF = new Set(["observation", "analysis", "forecast", "convlstm"]);  // reflectivity: a 3-D view
const RELIEF_CELLS = 128;   // the 3-D view samples the field on at most this many cells a side

const $ = (id) => document.getElementById(id);
const state = {
  status: null, issue: null, revision: 0, index: null, tab: null, frame: 0,
  playing: false, timer: null, dwell: 0, preload: [], listed: -1, listedLatest: null, eventsKey: "", view3d: false,
};

// ---- formatting -------------------------------------------------------------------------------------------

function hms(isoTime) {  // "2026-07-01T00:12:30Z" -> "00:12:30Z"
  return typeof isoTime === "string" && isoTime.length >= 19 ? isoTime.slice(11, 19) + "Z" : "–";
}

function wallHms(unix) {  // unix seconds -> "00:12:30Z"
  return Number.isFinite(unix) ? new Date(unix * 1000).toISOString().slice(11, 19) + "Z" : "–";
}

function seconds(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "–";
  if (s < 10) return s.toFixed(1) + " s";
  if (s < 120) return Math.round(s) + " s";
  return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
}

function number(v, digits) {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits);
}

function rain(mm) {  // mm/h with a sensible number of digits
  if (!Number.isFinite(mm)) return "";
  return mm < 1 ? mm.toFixed(2) : mm < 10 ? mm.toFixed(1) : String(Math.round(mm));
}

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function productURL(file) {
  return "/products/issues/" + encodeURIComponent(state.issue) + "/" + encodeURIComponent(file);
}

// ---- status badge and events ------------------------------------------------------------------------------

function badgeClass(st) {
  if (!st || st.outage) return "outage";
  const cycle = Number.isFinite(st.cycle_wall_seconds) ? st.cycle_wall_seconds : 30;
  if (Number.isFinite(st.lag_s) && st.lag_s > 1.5 * cycle) return "warn";
  const since = st.server_time - Math.max(300, 10 * cycle);
  if ((st.events || []).some((e) => WARN_KINDS.has(e.kind) && e.wall >= since)) return "warn";
  const flags = (state.index && state.index.flags) || {};
  return flags.late || flags.missing_volume || flags.diverged ? "warn" : "ok";
}

function renderBadge(st, reachable) {
  const badge = $("badge");
  if (!reachable) {
    badge.textContent = "server unreachable" + (st ? " · last seen " + wallHms(st.server_time) : "");
    badge.className = "outage";
    return;
  }
  const counts = st.counts || {};
  const parts = [st.state === "waiting" ? "waiting for the service" : String(st.state)];
  if (st.latest_issue_time) parts.push("last cycle " + hms(st.latest_issue_time));
  if (st.lag_s !== null && st.lag_s !== undefined) parts.push("lag " + seconds(st.lag_s));
  if (st.state !== "waiting") {
    parts.push("skipped " + (counts.skipped ?? 0), "rejected " + (counts.rejected ?? 0));
    if (counts.late) parts.push("late " + counts.late);
    if (st.outage && st.state === "running") parts.push("no new issue");
  }
  badge.textContent = parts.join(" · ");
  badge.className = badgeClass(st);
  renderEvents(st.events || []);
}

function renderEvents(events) {
  const last = events.length ? events[events.length - 1] : null;
  const key = events.length + ":" + (last ? last.wall + last.message : "");
  if (key === state.eventsKey) return;
  state.eventsKey = key;
  const list = $("events");
  list.replaceChildren();
  if (!events.length) list.append(el("li", "no events", "empty"));
  for (const e of events.slice().reverse()) {
    const item = el("li");
    item.append(el("time", wallHms(e.wall)), " ", el("span", e.kind, "kind " + e.kind), " ", el("span", e.message));
    if (e.file) item.append(" ", el("code", e.file));
    list.append(item);
  }
}

function toggleEvents() {
  const panel = $("events-panel");
  panel.hidden = !panel.hidden;
  $("badge").setAttribute("aria-expanded", String(!panel.hidden));
}

// ---- tabs, image, animation -------------------------------------------------------------------------------

function absentReason(kind, index) {
  const flags = index.flags || {};
  if (kind === "analysis" && index.mode === "replay") return "nowcast mode: no analysis (no data assimilation)";
  if (kind === "probability" && index.mode === "replay") return "nowcast mode: no ensemble, no probability";
  if (kind === "convlstm") return index.mode === "replay" ? "no ConvLSTM nowcast (none configured, or not ready yet)"
    : "the ConvLSTM runs in nowcast mode only";
  if (kind === "analysis") return flags.missing_volume ? "no radar volume: forecast only, no analysis" : "no analysis in this issue";
  if (kind === "observation") return "no radar volume for this issue time";
  if (kind === "verification") return "no verification yet: it needs the observations at the forecast's lead times";
  return "no " + kind + " in this issue";
}

function renderTabs() {
  const products = (state.index && state.index.products) || {};
  for (const button of document.querySelectorAll("#tabs [data-tab]")) {
    const kind = button.dataset.tab;
    const present = Array.isArray(products[kind]) && products[kind].length > 0;
    button.disabled = !present;
    button.title = present ? "" : state.index ? absentReason(kind, state.index) : "waiting for the first issue";
    button.setAttribute("aria-selected", String(kind === state.tab));
    button.classList.toggle("selected", kind === state.tab);
  }
}

function files() {
  return (state.index && state.tab && state.index.products[state.tab]) || [];
}

function selectTab(kind) {
  state.tab = kind;
  renderTabs();
  const n = files().length;
  const animated = ANIMATED.has(kind) && n > 1;
  $("animation").hidden = !animated;
  if (!animated) pause();
  const slider = $("slider");
  slider.max = String(Math.max(0, n - 1));
  state.frame = Math.min(state.frame, Math.max(0, n - 1));
  renderLegend(state.index.scales ? state.index.scales[kind] : null);
  renderVerification(kind === "verification" ? state.index.verification : null);
  $("toggle3d").disabled = !RELIEF.has(kind);
  showView();
  showFrame();
}

// ---- bird's-eye 3-D view ----------------------------------------------------------------------------------
// The shown reflectivity image as a relief: each cell a column as tall as its colour's level in the legend,
// seen obliquely from the south, drawn from the back (north) row to the front so that nearer columns cover
// farther ones. Transparent cells (below the first level) are flat; grey (no data) is drawn flat and grey.

function showView() {
  const on = state.view3d && RELIEF.has(state.tab);
  $("product").hidden = on;
  $("view3d").hidden = !on;
  $("toggle3d").setAttribute("aria-pressed", String(state.view3d));
  if (on) renderRelief();
}

function renderRelief() {
  const img = $("product");
  const canvas = $("view3d");
  const scale = state.index && state.index.scales && state.index.scales[state.tab];
  if (canvas.hidden || !scale || !img.complete || !img.naturalWidth) return;
  const nx = Math.min(img.naturalWidth, RELIEF_CELLS);
  const ny = Math.min(img.naturalHeight, RELIEF_CELLS);
  const sample = document.createElement("canvas");
  sample.width = nx;
  sample.height = ny;
  const sg = sample.getContext("2d");
  sg.imageSmoothingEnabled = false;  // nearest cells: keep the palette colours exact
  sg.drawImage(img, 0, 0, nx, ny);
  const pixels = sg.getImageData(0, 0, nx, ny).data;
  const level = new Map(scale.colours.map((c, i) => [c.toLowerCase(), i + 1]));
  const g = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  const cw = (w * 0.78) / nx;             // cell width on screen
  const depth = (h * 0.45) / ny;          // screen rows per grid row (the view is oblique)
  const skew = (w * 0.2) / ny;            // rows further back shift right
  const rise = (h * 0.3) / scale.colours.length;  // screen pixels per legend level
  const x0 = w * 0.02;
  const y0 = h * 0.5;
  g.fillStyle = "#eef1f4";
  g.fillRect(0, 0, w, h);
  g.fillStyle = "#dfe4ea";                // the ground
  g.beginPath();
  g.moveTo(x0 + ny * skew, y0);
  g.lineTo(x0 + ny * skew + nx * cw, y0);
  g.lineTo(x0 + nx * cw, y0 + ny * depth);
  g.lineTo(x0, y0 + ny * depth);
  g.closePath();
  g.fill();
  for (let j = 0; j < ny; j++) {          // row 0 of the image is the north (back) edge
    const back = ny - j;
    const y = y0 + j * depth;
    for (let i = 0; i < nx; i++) {
      const k = 4 * (j * nx + i);
      if (pixels[k + 3] === 0) continue;  // below the first level
      const hex = "#" + [0, 1, 2].map((c) => pixels[k + c].toString(16).padStart(2, "0")).join("");
      const lv = level.get(hex) || 0;
      const x = x0 + back * skew + i * cw - skew;
      const top = y - lv * rise;
      if (lv > 0) {
        g.fillStyle = shade(pixels[k], pixels[k + 1], pixels[k + 2], 0.7);  // the column's south face
        g.fillRect(x, top + depth, cw + 0.5, lv * rise);
      }
      g.fillStyle = hex;                  // its top
      g.fillRect(x, top, cw + 0.5, depth + 0.5);
    }
  }
}

function shade(r, g, b, f) {
  return "rgb(" + Math.round(r * f) + "," + Math.round(g * f) + "," + Math.round(b * f) + ")";
}

function showFrame() {
  const list = files();
  const img = $("product");
  if (!list.length) return;
  const file = list[Math.min(state.frame, list.length - 1)];
  const url = productURL(file);
  if (img.getAttribute("src") !== url) img.src = url;
  img.alt = state.tab + " " + file;
  img.classList.toggle("chart", state.tab === "verification");
  $("slider").value = String(state.frame);
  const leads = state.index.lead_minutes || [];
  const valid = state.index.valid_times || [];
  const lead = leads[state.frame];
  $("frame-label").textContent = Number.isFinite(lead)
    ? "+" + lead + " min · valid " + hms(valid[state.frame])
    : "frame " + (state.frame + 1) + " / " + list.length;
}

function step() {
  const n = files().length;
  if (n < 2) return pause();
  if (!$("product").complete) return;  // wait for a frame still loading rather than skip it
  if (state.frame === n - 1 && state.dwell < DWELL_FRAMES) {
    state.dwell += 1;
    return;
  }
  state.dwell = 0;
  state.frame = (state.frame + 1) % n;
  showFrame();
}

function play() {
  if (state.timer !== null) return;
  state.playing = true;
  state.timer = setInterval(step, FRAME_MS);
  $("play").textContent = "⏸ Pause";
}

function pause() {
  if (state.timer !== null) clearInterval(state.timer);
  state.timer = null;
  state.playing = false;
  $("play").textContent = "▶ Play";
}

function preloadFrames() {  // the hidden frames, once the visible image is in; <html data-frames="NAME"> when all are
  const issue = state.issue;
  const urls = [];
  for (const kind of ANIMATED) for (const file of (state.index.products[kind] || [])) urls.push(productURL(file));
  let pending = urls.length;
  const done = () => {
    pending -= 1;
    if (pending === 0 && state.issue === issue) document.documentElement.dataset.frames = issue;
  };
  state.preload = urls.map((url) => {
    const image = new Image();
    image.decoding = "async";
    image.addEventListener("load", done, { once: true });
    image.addEventListener("error", done, { once: true });
    image.src = url;
    return image;
  });
  if (!urls.length) document.documentElement.dataset.frames = issue;
}

// ---- legend, verification, timing, notes ------------------------------------------------------------------

function renderLegend(scale) {
  const legend = $("legend");
  legend.replaceChildren();
  legend.hidden = !scale || !Array.isArray(scale.colours);
  if (legend.hidden) return;
  const percent = scale.units === "1";
  const mm = Array.isArray(scale.mm_per_h) ? scale.mm_per_h : null;
  const head = el("div", null, "legend-units");
  head.append(el("span", percent ? "probability" : scale.units));
  if (mm) head.append(el("span", "mm/h", "mm"));
  legend.append(head);
  scale.colours.forEach((colour, i) => {
    const lo = scale.levels[i];
    const label = percent ? Math.round(lo * 100) + "%" : String(lo);
    const item = el("div", null, "legend-item");
    const swatch = el("span", null, "swatch");
    swatch.style.backgroundColor = colour;
    item.append(swatch, el("span", label, "level"));
    if (mm) item.append(el("span", rain(mm[i]), "mm"));
    const hi = scale.levels[i + 1];
    item.title = percent ? label + " – " + Math.min(100, Math.round(hi * 100)) + "%"
      : lo + " – " + hi + " " + scale.units + (mm ? " (" + rain(mm[i]) + " – " + rain(mm[i + 1]) + " mm/h)" : "");
    legend.append(item);
  });
}

function renderVerification(v) {
  const panel = $("verification-panel");
  const table = $("verification-table");
  table.replaceChildren();
  panel.hidden = !v || !v.csi || !Array.isArray(v.lead_minutes);
  if (panel.hidden) return;
  const hasFss = v.fss && Array.isArray(v.fss.forecast);
  const ml = Array.isArray(v.csi.convlstm);  // the ConvLSTM is scored beside extrapolation (nowcast mode)
  const methods = [["forecast", ml ? "extr" : "fcst"]];
  if (ml) methods.push(["convlstm", "ConvLSTM"]);
  methods.push(["persistence", "pers"]);
  const scores = hasFss ? ["csi", "fss"] : ["csi"];
  table.append(el("caption", "CSI" + (hasFss ? " and FSS" : "") + " at ≥ " + v.threshold + " " + v.units));
  const head = el("tr");
  head.append(el("th", "lead"));
  for (const score of scores) for (const [, name] of methods) head.append(el("th", score.toUpperCase() + " " + name));
  table.append(head);
  v.lead_minutes.forEach((lead, i) => {
    const row = el("tr");
    row.append(el("td", "+" + lead + " min"));
    for (const score of scores) {
      const p = (v[score].persistence || [])[i];
      for (const [key] of methods) {
        const x = (v[score][key] || [])[i];
        row.append(el("td", number(x, 2), key !== "persistence" && x > p ? "better" : ""));
      }
    }
    table.append(row);
  });
}

function renderTiming() {
  const dl = $("timing");
  dl.replaceChildren();
  const add = (term, value) => dl.append(el("dt", term), el("dd", value));
  const t = (state.index && state.index.timing) || {};
  const lat = (state.status && state.status.latency_s) || {};
  // an issue's latency is known only once it is listed: the status holds it for the latest issue
  const latest = state.status && state.status.latest_issue === state.issue;
  add("latency", seconds(Number.isFinite(t.latency_s) ? t.latency_s : latest ? lat.last : undefined));
  if (t.arrival) add("input arrived", hms(t.arrival));
  for (const [key, name] of [["seconds_analysis", "analysis"], ["seconds_forecast", "forecast"],
    ["seconds_nowcast", "nowcast"], ["seconds_convlstm", "ConvLSTM"],
    ["seconds_extended_forecast", "extended forecast"],
    ["seconds_products", "products"]]) {
    if (Number.isFinite(t[key])) add(name, seconds(t[key]));
  }
  if (lat.n) add("p50 / p95", seconds(lat.p50) + " / " + seconds(lat.p95) + " (" + lat.n + ")");
}

function renderNotes() {
  const list = $("notes");
  list.replaceChildren();
  const index = state.index || {};
  const flags = index.flags || {};
  const notes = (index.notes || []).slice();
  if (flags.late) notes.push("late: published after the next input was due");
  if (flags.diverged) notes.push("the analysis diverged");
  if (flags.skipped_before) notes.push(flags.skipped_before + " input(s) skipped before this issue");
  if (!notes.length) list.append(el("li", "none", "empty"));
  for (const note of notes) list.append(el("li", note));
}

// ---- polling ----------------------------------------------------------------------------------------------

async function loadIssue(name, revision) {
  const index = await getJSON("/api/issues/" + encodeURIComponent(name));
  const first = state.index === null;
  state.issue = name;
  state.revision = revision || 0;
  state.index = index;
  $("title").textContent = index.title || "dacast real time";
  const t = index.issue_time || "";
  $("issue-time").textContent = t.length >= 19 ? t.slice(0, 10) + " " + t.slice(11, 19) + " UTC" : name;
  const products = index.products || {};
  const available = Object.keys(products).filter((k) => products[k] && products[k].length);
  const tab = available.includes(state.tab) ? state.tab : available.includes("forecast") ? "forecast" : available[0];
  if (tab) selectTab(tab);
  else renderTabs();
  renderTiming();
  renderNotes();
  const img = $("product");
  if (first || !img.complete) img.addEventListener("load", preloadFrames, { once: true });
  else preloadFrames();
}

async function latestListed(count) {  // no latest issue in the status (e.g. service stopped): ask the folder
  if (count !== state.listed) {
    const listing = await getJSON("/api/issues");
    state.listed = count;
    state.listedLatest = listing.latest;
  }
  return state.listedLatest;
}

async function poll() {
  try {
    const st = await getJSON("/api/status");
    state.status = st;
    const latest = st.latest_issue || (st.n_issues > 0 ? await latestListed(st.n_issues) : null);
    // a new issue, or the latest one amended (a slower product such as the ConvLSTM added to it)
    const revision = latest === st.latest_issue ? st.latest_revision || 0 : 0;
    if (latest && (latest !== state.issue || revision !== state.revision)) await loadIssue(latest, revision);
    renderBadge(st, true);
    if (state.index) renderTiming();
  } catch (err) {
    renderBadge(state.status, false);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

function start() {
  for (const button of document.querySelectorAll("#tabs [data-tab]")) {
    button.addEventListener("click", () => selectTab(button.dataset.tab));
  }
  $("badge").addEventListener("click", toggleEvents);
  $("play").addEventListener("click", () => (state.playing ? pause() : play()));
  $("slider").addEventListener("input", (e) => {
    state.frame = Number(e.target.value);
    state.dwell = 0;
    showFrame();
  });
  $("product").addEventListener("error", () => { $("product").alt = "image not available"; });
  $("product").addEventListener("load", renderRelief);
  $("toggle3d").addEventListener("click", () => { state.view3d = !state.view3d; showView(); });
  document.addEventListener("keydown", (e) => {
    if (e.target !== document.body || $("animation").hidden) return;
    const n = files().length;
    if (e.key === " ") { e.preventDefault(); state.playing ? pause() : play(); }
    else if (e.key === "ArrowRight") { state.frame = (state.frame + 1) % n; showFrame(); }
    else if (e.key === "ArrowLeft") { state.frame = (state.frame + n - 1) % n; showFrame(); }
  });
  poll();
}

document.addEventListener("DOMContentLoaded", start);
