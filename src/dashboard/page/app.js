// The dashboard page: renders each snapshot the engine pushes over /live, keeps the last minutes
// of keys and records/s per worker for the charts, and reconnects with backoff when the socket
// drops (the engine restarting, a worker stopping), showing the "disconnected" banner meanwhile.
"use strict";

const HISTORY_POINTS = 300; // five minutes at one snapshot a second
const RETRY_MS = [1000, 2000, 4000, 8000, 10000];

const $ = (id) => document.getElementById(id);

/** A stable colour per worker id, so a worker keeps its colour in the strip, the table and the charts. */
function colour(id) {
  const n = Number(/\d+$/.exec(id)?.[0] ?? 0);
  return `hsl(${(n * 137.5 + 210) % 360}, 65%, 48%)`;
}

function text(tag, value, className) {
  const el = document.createElement(tag);
  el.textContent = value;
  if (className) el.className = className;
  return el;
}

function renderWorkers(workers) {
  const body = $("workers").tBodies[0];
  body.replaceChildren(
    ...workers.map((w) => {
      const row = document.createElement("tr");
      row.dataset.worker = w.id;
      if (!w.alive) row.className = "dead";
      const name = text("td", w.id + (w.coordinator ? " (coordinator)" : ""));
      const swatch = text("span", "", "swatch");
      swatch.style.background = colour(w.id);
      name.prepend(swatch);
      const state = w.fenced ? "fenced" : w.alive ? "alive" : "unreachable";
      row.append(
        name,
        text("td", w.address),
        text("td", state, "state"),
        text("td", String(w.slots), "num slots"),
        text("td", String(w.backups), "num backups"),
        text("td", String(w.keys), "num keys"),
        text("td", w.recordsPerSecond.toFixed(0), "num rate"),
        text("td", String(w.connectorSessions), "num sessions"),
      );
      return row;
    }),
  );
}

function renderStrip(strip, slotCount) {
  $("strip-scale").textContent = strip.slotsPerCell === 1 ? `${slotCount} slots, one cell each` : `${slotCount} slots, ${strip.slotsPerCell} per cell (coloured by the worker leading most of them)`;
  const cells = $("strip");
  if (cells.children.length !== strip.owners.length) cells.replaceChildren(...strip.owners.map(() => document.createElement("div")));
  strip.owners.forEach((owner, i) => {
    const cell = cells.children[i];
    if (cell.dataset.owner === owner) return;
    cell.dataset.owner = owner;
    cell.title = `slots ${i * strip.slotsPerCell}-${(i + 1) * strip.slotsPerCell - 1}: ${owner || "none"}`;
    cell.style.background = owner ? colour(owner) : "#ddd";
  });
}

function renderPairs(id, entries, empty) {
  const list = $(id);
  list.replaceChildren(...(entries.length === 0 ? [text("dd", empty)] : entries.flatMap(([k, v]) => [text("dt", k), text("dd", String(v))])));
}

function renderEvents(snapshot) {
  const coordinator = snapshot.workers.find((w) => w.coordinator)?.id;
  $("events-scope").textContent =
    snapshot.mode !== "cluster" ? "" : coordinator === snapshot.servedBy ? "(the cluster's: this worker holds the coordinator)" : `(this worker's; ${coordinator ?? "the coordinator"}'s page shows the cluster's)`;
  const events = snapshot.events;
  $("events").replaceChildren(
    ...events
      .slice()
      .reverse()
      .map((e) => {
        const item = document.createElement("li");
        item.dataset.kind = e.kind;
        item.append(text("time", new Date(e.atMs).toLocaleTimeString()), text("span", e.kind, "kind"), text("span", e.text + (e.count > 1 ? ` (×${e.count})` : "")));
        return item;
      }),
  );
}

// Chart history: one time axis, and per worker id its values (null before it joined or after it left).
const history = { times: [], keys: new Map(), rate: new Map() };
const charts = { keys: undefined, rate: undefined };

function record(snapshot) {
  const at = snapshot.atMs / 1000;
  history.times.push(at);
  for (const [field, series] of [["keys", history.keys], ["recordsPerSecond", history.rate]]) {
    for (const w of snapshot.workers) if (!series.has(w.id)) series.set(w.id, new Array(history.times.length - 1).fill(null));
    for (const [id, values] of series) values.push(snapshot.workers.find((w) => w.id === id && !w.fenced)?.[field] ?? null);
  }
  if (history.times.length > HISTORY_POINTS) {
    history.times.shift();
    for (const series of [history.keys, history.rate]) for (const values of series.values()) values.shift();
  }
}

function drawChart(name, el, series) {
  const ids = [...series.keys()];
  const data = [history.times, ...ids.map((id) => series.get(id))];
  const chart = charts[name];
  // uPlot's series are fixed at creation: a worker joining makes a new chart.
  if (chart && chart.series.length === ids.length + 1) {
    chart.setData(data);
    return;
  }
  chart?.destroy();
  charts[name] = new uPlot(
    {
      width: Math.max(320, Math.min(560, window.innerWidth - 80)),
      height: 200,
      scales: { x: { time: true } },
      axes: [{}, { size: 70 }],
      series: [{}, ...ids.map((id) => ({ label: id, stroke: colour(id), width: 2, points: { show: false } }))],
    },
    data,
    el,
  );
}

function render(snapshot) {
  $("app").textContent = snapshot.app;
  const alive = snapshot.workers.filter((w) => w.alive).length;
  $("summary").textContent =
    snapshot.mode === "cluster"
      ? `cluster of ${alive} live workers, served by ${snapshot.servedBy}; map epoch ${snapshot.epoch}, ${snapshot.replicas} replicas${snapshot.underReplicated ? `, ${snapshot.underReplicated} slots short of a copy` : ""}`
      : `one process, ${snapshot.slotCount} slots`;
  $("error").hidden = snapshot.error === undefined;
  $("error").textContent = snapshot.error ?? "";
  if (snapshot.workers.length > 0 || snapshot.error === undefined) renderWorkers(snapshot.workers);
  renderStrip(snapshot.strip, snapshot.slotCount);
  const s = snapshot.sessions;
  renderPairs("sessions", s ? [["source", s.source], ["sink", s.sink], ["partitioner", s.partitioner]] : [], "no connector server on this worker");
  renderPairs("commit-lag", (snapshot.commitLag ?? []).map((c) => [c.pipeline, c.uncommitted]), "0 (no --data-dir: output commits as it leaves)");
  renderEvents(snapshot);
  if (snapshot.workers.length > 0) {
    record(snapshot);
    drawChart("keys", $("keys-chart"), history.keys);
    drawChart("rate", $("rate-chart"), history.rate);
  }
}

let attempt = 0;
let countdown;

function showDisconnected(delayMs) {
  const banner = $("disconnected");
  banner.hidden = false;
  let left = Math.round(delayMs / 1000);
  const tick = () => ($("retry").textContent = left > 0 ? `reconnecting in ${left} s` : "reconnecting…");
  tick();
  clearInterval(countdown);
  countdown = setInterval(() => {
    left--;
    tick();
  }, 1000);
}

function connect() {
  const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/live`);
  let closed = false;
  socket.onmessage = (message) => {
    attempt = 0;
    clearInterval(countdown);
    $("disconnected").hidden = true;
    render(JSON.parse(message.data));
  };
  // A refused connection fires error then close: one retry, scheduled on close.
  socket.onclose = () => {
    if (closed) return;
    closed = true;
    const delay = RETRY_MS[Math.min(attempt, RETRY_MS.length - 1)];
    attempt++;
    showDisconnected(delay);
    setTimeout(connect, delay);
  };
}

connect();
