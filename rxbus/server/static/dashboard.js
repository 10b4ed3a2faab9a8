// rxbus dashboard: live events, pattern filter, pause, per-topic rates and dead letters.
//
// Every value from the server is put in the page with textContent, never as markup, so an event
// carrying "<script>" shows those characters. The page reconnects by itself (socket.io-client)
// and, on every (re)connect, subscribes again with the id of the last event it saw, so the server
// sends what it missed; events are also dropped by id, so a repeat never shows twice.
(function () {
  "use strict";

  const MAX_ROWS = 500;
  const MAX_SEEN = 10000;
  const MAX_WAITING = 5000;
  const RATE_WINDOW_MS = 10000;
  const HISTORY_ON_START = 100;

  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  const $ = (id) => document.getElementById(id);

  const state = {
    pattern: params.get("pattern") || "**",
    lastId: null,
    seen: new Set(),
    seenOrder: [],
    paused: false,
    waiting: [],
    received: 0,
    connectedOnce: false,
    reconnects: 0,
    topics: new Map(), // topic -> {total, times: [ms]}
    deadCount: 0,
  };
  $("pattern").value = state.pattern;

  const socket = io({ auth: token ? { token: token } : {}, reconnectionDelayMax: 2000 });

  function setStatus(kind, text) {
    const el = $("status");
    el.dataset.state = kind;
    el.textContent = text;
  }

  function showError(text) {
    $("error").textContent = text || "";
  }

  function subscribe() {
    const request = { pattern: state.pattern, last_id: state.lastId };
    if (state.lastId === null) request.history = HISTORY_ON_START;
    socket.emit("subscribe", request, (ack) => {
      if (!ack || !ack.ok) {
        showError("subscribe refused: " + (ack && ack.error));
        return;
      }
      showError("");
      for (const event of ack.missed) receive(event);
    });
  }

  socket.on("connect", () => {
    if (state.connectedOnce) {
      state.reconnects += 1;
      $("reconnects").textContent = String(state.reconnects);
    }
    state.connectedOnce = true;
    setStatus("connected", "connected");
    subscribe();
    socket.emit("dead_letters", {}, (ack) => {
      if (!ack || !ack.ok) return;
      // The server's recent list replaces ours, so a reconnect shows none twice.
      state.deadCount = 0;
      $("dead-letters").replaceChildren();
      for (const letter of ack.dead_letters) addDeadLetter(letter);
    });
  });
  socket.on("disconnect", () => setStatus("disconnected", "disconnected, reconnecting"));
  socket.on("connect_error", (err) => {
    setStatus("refused", "cannot connect: " + (err && err.message));
  });
  socket.on("event", receive);
  socket.on("dead_letter", addDeadLetter);

  function remember(id) {
    if (state.seen.has(id)) return false;
    state.seen.add(id);
    state.seenOrder.push(id);
    if (state.seenOrder.length > MAX_SEEN) state.seen.delete(state.seenOrder.shift());
    return true;
  }

  function receive(event) {
    if (!event || typeof event.id !== "string" || !remember(event.id)) return;
    // Events arrive in the server's arrival order, so the last one received is where a
    // reconnect resumes.
    state.lastId = event.id;
    state.received += 1;
    $("received").textContent = String(state.received);
    countTopic(String(event.topic));
    if (state.paused) {
      state.waiting.push(event);
      if (state.waiting.length > MAX_WAITING) state.waiting.shift();
      const waiting = $("waiting");
      waiting.hidden = false;
      waiting.textContent = state.waiting.length + " waiting (paused)";
      return;
    }
    render(event);
  }

  function cell(row, text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
  }

  function render(event) {
    const row = document.createElement("tr");
    row.dataset.id = event.id;
    row.dataset.topic = String(event.topic);
    row.className = "fresh";
    cell(row, shortTime(event.timestamp), "time");
    cell(row, String(event.topic), "topic");
    cell(row, String(event.type), "type");
    cell(row, String(event.source || ""), "source");
    cell(row, JSON.stringify(event.data), "data");
    cell(row, event.id, "id");
    const rows = $("event-rows");
    rows.insertBefore(row, rows.firstChild);
    while (rows.childElementCount > MAX_ROWS) rows.removeChild(rows.lastChild);
  }

  function shortTime(iso) {
    const t = new Date(iso);
    return isNaN(t) ? String(iso) : t.toLocaleTimeString([], { hour12: false }) +
      "." + String(t.getMilliseconds()).padStart(3, "0");
  }

  function countTopic(topic) {
    let entry = state.topics.get(topic);
    if (!entry) {
      entry = { total: 0, times: [] };
      state.topics.set(topic, entry);
    }
    entry.total += 1;
    entry.times.push(Date.now());
  }

  function renderRates() {
    const cutoff = Date.now() - RATE_WINDOW_MS;
    const rows = $("rate-rows");
    const ordered = [...state.topics.entries()].sort((a, b) => b[1].total - a[1].total);
    rows.replaceChildren();
    for (const [topic, entry] of ordered) {
      while (entry.times.length && entry.times[0] < cutoff) entry.times.shift();
      const row = document.createElement("tr");
      row.dataset.topic = topic;
      cell(row, topic, "topic");
      cell(row, (entry.times.length / (RATE_WINDOW_MS / 1000)).toFixed(1), "rate");
      cell(row, String(entry.total), "total");
      rows.appendChild(row);
    }
  }
  setInterval(renderRates, 1000);

  function addDeadLetter(letter) {
    state.deadCount += 1;
    $("dead-count").textContent = String(state.deadCount);
    const item = document.createElement("li");
    const event = letter.event && typeof letter.event === "object" ? letter.event : {};
    item.textContent = String(letter.error);
    const detail = document.createElement("span");
    detail.textContent = " in " + String(letter.consumer) + " for " +
      String(event.topic || "?") + " " + String(event.id || "") + " (attempts " +
      String(letter.attempts) + ")";
    item.appendChild(detail);
    const list = $("dead-letters");
    list.insertBefore(item, list.firstChild); // newest first
  }

  $("pause").addEventListener("click", () => {
    state.paused = !state.paused;
    const button = $("pause");
    button.setAttribute("aria-pressed", String(state.paused));
    button.textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) {
      const waiting = state.waiting;
      state.waiting = [];
      for (const event of waiting) render(event);
      $("waiting").hidden = true;
    }
  });

  $("filter").addEventListener("submit", (e) => {
    e.preventDefault();
    const pattern = $("pattern").value.trim() || "**";
    if (pattern === state.pattern) return;
    socket.emit("unsubscribe", { pattern: state.pattern });
    state.pattern = pattern;
    state.lastId = null;
    state.seen.clear();
    state.seenOrder = [];
    state.waiting = [];
    $("event-rows").replaceChildren();
    const url = new URL(window.location.href);
    url.searchParams.set("pattern", pattern);
    window.history.replaceState(null, "", url);
    subscribe();
  });
})();
