// rxbus dashboard: live events, pattern filter, pause, per-topic rates and dead letters.
//
// Every value from the server is put in the page with textContent, never as markup, so an event
// carrying "<script>" shows those characters.
//
// Keeping up at any rate: the server sends events in batches, one at a time, and waits for this
// page to acknowledge each one; what the page cannot take waits in a bounded queue on the server,
// and what that queue drops arrives here as a gap ("n events not shown, from ... to ..."). The
// page draws at most once per animation frame and ten times a second, at most ROWS_PER_DRAW
// rows each time; when more arrive it says so and shows a sample (the newest rows, fewer and
// four times a second), while the topic totals and rates come from the server's own counters
// and stay exact. On every (re)connect it subscribes again with the id of the last event it
// saw: the server sends the newest missed events and, for the rest, an exact gap. Events are
// dropped by id, so a repeat never counts or shows twice.
(function () {
  "use strict";

  const MAX_ROWS = 500;
  const MAX_SEEN = 20000;
  const ROWS_PER_DRAW = 50;
  const SAMPLED_ROWS_PER_DRAW = 25; // about what the panel shows at once
  const DRAW_INTERVAL_MS = 100; // at most 10 draws a second, each in an animation frame
  // In the sampled view the rows are a sample anyway: 4 draws a second show it as well and
  // leave the main thread to input (each draw re-lays out and repaints the visible rows).
  const SAMPLED_DRAW_INTERVAL_MS = 250;
  const SAMPLED_HOLD_MS = 2000; // sampled view stays this long after the last busy frame
  const RATE_WINDOW_MS = 10000;
  const HISTORY_ON_START = 100;
  const HIGHLIGHT_MAX = 3; // rows highlighted per frame; none in the sampled view
  const LAG_HOLD_MS = 1000;

  const params = new URLSearchParams(window.location.search);
  const token = params.get("token");
  const $ = (id) => document.getElementById(id);

  const state = {
    pattern: params.get("pattern") || "**",
    lastId: null,
    seen: new Set(),
    seenOrder: new Array(MAX_SEEN), // a ring: the oldest id is forgotten first
    seenNext: 0,
    paused: false,
    waiting: 0, // events received while paused
    received: 0, // distinct events received for this pattern
    notShown: 0, // events the server accepted for this pattern that never reached the page
    lastGap: null,
    pending: [], // events and gaps received, not drawn yet (newest last, at most MAX_ROWS)
    drawn: 0,
    sampledOut: 0, // received but not drawn, because the page showed a sample
    frames: 0,
    mode: "live",
    busyUntil: 0,
    frameRequested: false,
    lastDraw: 0,
    drawAll: false, // the next frame draws up to MAX_ROWS (after a resume)
    subscribing: false,
    held: [], // batches that arrived before the subscribe ack (newer than what it carries)
    serverQueued: 0,
    serverWait: 0,
    lagShownUntil: 0, // "behind" stays up at least LAG_HOLD_MS, so a short lag is seen
    connectedOnce: false,
    reconnects: 0,
    totals: new Map(), // topic -> total accepted by the server (its counters)
    snapshots: [], // [ms, Map] over the rate window
    deadCount: 0,
  };
  window.__rxbus = state; // read by the browser tests and the benchmark
  $("pattern").value = state.pattern;

  const socket = io({ auth: token ? { token: token } : {}, reconnectionDelayMax: 2000 });
  Object.defineProperty(state, "socket", { value: socket }); // tests force a reconnect with it

  function setStatus(kind, text) {
    const el = $("status");
    el.dataset.state = kind;
    el.textContent = text;
  }

  function showError(text) {
    $("error").textContent = text || "";
  }

  function subscribe() {
    const pattern = state.pattern;
    const request = { pattern: pattern, last_id: state.lastId, batch: true, replace: true };
    if (state.lastId === null) request.history = HISTORY_ON_START;
    state.subscribing = true;
    state.held = [];
    socket.emit("subscribe", request, (ack) => {
      if (pattern !== state.pattern) return; // the filter changed meanwhile
      state.subscribing = false;
      const held = state.held;
      state.held = [];
      if (!ack || !ack.ok) {
        showError("subscribe refused: " + (ack && ack.error));
        return;
      }
      showError("");
      if (ack.topics) takeTotals(ack.topics);
      if (ack.gap) addGap(ack.gap);
      for (const event of ack.missed) receive(event);
      for (const batch of held) takeBatch(batch);
      scheduleDraw();
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
  socket.on("disconnect", () => {
    state.subscribing = false;
    setStatus("disconnected", "disconnected, reconnecting");
  });
  socket.on("connect_error", (err) => {
    setStatus("refused", "cannot connect: " + (err && err.message));
  });
  socket.on("events", (batch, ack) => {
    // Acknowledge at once: taking a batch is cheap (drawing waits for the next frame), and
    // the server sends the next one only after this.
    if (typeof ack === "function") ack();
    if (!batch || !Array.isArray(batch.patterns) || !batch.patterns.includes(state.pattern)) {
      return; // sent for a filter this page no longer shows
    }
    if (state.subscribing) state.held.push(batch);
    else takeBatch(batch);
    scheduleDraw();
  });
  socket.on("stats", (stats) => {
    if (!stats || !Array.isArray(stats.patterns) || !stats.patterns.includes(state.pattern)) {
      return;
    }
    takeLag(stats);
    takeTotals(stats.topics || {});
    scheduleDraw();
  });
  socket.on("dead_letter", addDeadLetter);

  function takeBatch(batch) {
    takeLag(batch);
    for (const item of batch.events || []) {
      if (item && item.gap) addGap(item.gap);
      else receive(item);
    }
  }

  function takeLag(info) {
    const queued = Number(info.queued) || 0;
    const wait = Math.max(Number(info.oldest_wait) || 0, Number(info.waited) || 0);
    const now = performance.now();
    if (queued > 0 || wait >= 1) {
      // Show the worst lag of the last second, not only the latest report.
      const holding = now < state.lagShownUntil;
      state.serverQueued = holding ? Math.max(state.serverQueued, queued) : queued;
      state.serverWait = holding ? Math.max(state.serverWait, wait) : wait;
      state.lagShownUntil = now + LAG_HOLD_MS;
    } else if (now >= state.lagShownUntil) {
      state.serverQueued = 0;
      state.serverWait = 0;
    }
  }

  function remember(id) {
    if (state.seen.has(id)) return false;
    const order = state.seenOrder;
    const old = order[state.seenNext];
    if (old !== undefined) state.seen.delete(old);
    order[state.seenNext] = id;
    state.seenNext = (state.seenNext + 1) % MAX_SEEN;
    state.seen.add(id);
    return true;
  }

  function receive(event) {
    if (!event || typeof event.id !== "string" || !remember(event.id)) return;
    // Events arrive in the server's arrival order, so the last one received is where a
    // reconnect resumes.
    state.lastId = event.id;
    state.received += 1;
    if (state.paused) state.waiting += 1;
    queueRow(event);
  }

  function addGap(gap) {
    const count = Number(gap.count) || 0;
    if (count <= 0 && !gap.at_least) return;
    state.notShown += count;
    const text =
      (gap.at_least ? "at least " : "") + count.toLocaleString("en-US") + " events not shown" +
      (gap.from ? ", from " + shortTime(gap.from.timestamp) : "") +
      (gap.to ? (gap.from ? " to " : ", before ") + shortTime(gap.to.timestamp) : "");
    state.lastGap = text;
    queueRow({ gap: text });
  }

  function queueRow(item) {
    const pending = state.pending;
    pending.push(item);
    if (pending.length >= 2 * MAX_ROWS) {
      // The older half can no longer be shown once the newer ones are drawn.
      const old = pending.splice(0, pending.length - MAX_ROWS);
      for (const o of old) if (!o.gap) state.sampledOut += 1;
      state.busyUntil = performance.now() + SAMPLED_HOLD_MS;
    }
  }

  function scheduleDraw() {
    if (state.frameRequested) return;
    state.frameRequested = true;
    const now = performance.now();
    const interval = now < state.busyUntil ? SAMPLED_DRAW_INTERVAL_MS : DRAW_INTERVAL_MS;
    const wait = state.lastDraw + interval - now;
    if (wait > 0) setTimeout(() => requestAnimationFrame(draw), wait);
    else requestAnimationFrame(draw);
  }

  function cell(row, text, className) {
    // Event rows are grid rows of spans; the small topics table is a real table.
    const inTable = row.tagName === "TR";
    const el = document.createElement(inTable ? "td" : "span");
    if (!inTable) el.setAttribute("role", "cell");
    el.textContent = text;
    if (className) el.className = className;
    row.appendChild(el);
  }

  function eventRow(event, fresh) {
    const row = document.createElement("div");
    row.setAttribute("role", "row");
    row.dataset.id = event.id;
    row.dataset.topic = String(event.topic);
    row.className = fresh ? "row fresh" : "row";
    cell(row, shortTime(event.timestamp), "time");
    cell(row, String(event.topic), "topic");
    cell(row, String(event.type), "type");
    cell(row, String(event.source || ""), "source");
    cell(row, JSON.stringify(event.data), "data");
    cell(row, event.id, "id");
    return row;
  }

  function gapRow(text) {
    const row = document.createElement("div");
    row.setAttribute("role", "row");
    row.className = "row gap";
    const span = document.createElement("span");
    span.setAttribute("role", "cell");
    span.textContent = text;
    row.appendChild(span);
    return row;
  }

  // At most one draw per animation frame and DRAW_INTERVAL_MS, whatever the event rate: the
  // newest ROWS_PER_DRAW rows go in as one fragment at the top; the rest are counted as sampled.
  function draw() {
    state.frameRequested = false;
    state.frames += 1;
    const now = performance.now();
    state.lastDraw = now;
    if (!state.paused && state.pending.length) {
      const pending = state.pending;
      state.pending = [];
      let events = 0;
      const budget = state.drawAll
        ? MAX_ROWS
        : now < state.busyUntil ? SAMPLED_ROWS_PER_DRAW : ROWS_PER_DRAW;
      state.drawAll = false;
      const chosen = [];
      for (let i = pending.length - 1; i >= 0; i--) {
        const item = pending[i];
        if (item.gap) {
          chosen.push(item);
        } else if (events < budget) {
          chosen.push(item);
          events += 1;
        } else {
          state.sampledOut += 1;
          state.busyUntil = now + SAMPLED_HOLD_MS;
        }
      }
      const sampled = now < state.busyUntil;
      const fragment = document.createDocumentFragment();
      for (const item of chosen) {
        // chosen is newest first, as the table is
        if (item.gap) fragment.appendChild(gapRow(item.gap));
        else fragment.appendChild(eventRow(item, !sampled && events <= HIGHLIGHT_MAX));
      }
      state.drawn += events;
      const rows = $("event-rows");
      rows.insertBefore(fragment, rows.firstChild);
      let extra = rows.childElementCount - MAX_ROWS;
      while (extra-- > 0) rows.removeChild(rows.lastChild);
    }
    showCounts(now);
    // Keep drawing while sampled or behind, so the view switches back once that is over.
    if (state.pending.length || now < state.busyUntil || now < state.lagShownUntil) {
      scheduleDraw();
    }
  }

  function showCounts(now) {
    $("received").textContent = String(state.received);
    $("not-shown").textContent = String(state.notShown);
    const gapNote = $("gap-note");
    gapNote.hidden = state.lastGap === null;
    gapNote.textContent = state.lastGap || "";
    const mode = now < state.busyUntil ? "sampled" : "live";
    if (mode !== state.mode || $("mode").textContent === "") {
      state.mode = mode;
      const el = $("mode");
      el.dataset.mode = mode;
      el.textContent =
        mode === "sampled"
          ? "sampled view: too many events to draw each one; rows are a sample, totals and rates exact"
          : "live";
    }
    if (now >= state.lagShownUntil) {
      state.serverQueued = 0;
      state.serverWait = 0;
    }
    const behind = state.serverQueued > 0 || state.serverWait >= 1;
    const lag = $("lag");
    lag.dataset.behind = behind ? "yes" : "no";
    lag.textContent = behind
      ? "behind: " + state.serverQueued + " events, " + state.serverWait.toFixed(1) + " s"
      : "up to date";
    const waiting = $("waiting");
    waiting.hidden = !state.paused;
    if (state.paused) waiting.textContent = state.waiting + " waiting (paused)";
  }

  function pad(n, width) {
    return String(n).padStart(width, "0");
  }

  function shortTime(iso) {
    const t = new Date(iso);
    if (isNaN(t)) return String(iso);
    return pad(t.getHours(), 2) + ":" + pad(t.getMinutes(), 2) + ":" + pad(t.getSeconds(), 2) +
      "." + pad(t.getMilliseconds(), 3);
  }

  // Totals are the server's counters for the topics this pattern matches; rates are their
  // change over the last RATE_WINDOW_MS, so both stay exact when the rows are a sample.
  function takeTotals(topics) {
    const now = Date.now();
    const snapshot = new Map(Object.entries(topics).map(([t, n]) => [t, Number(n)]));
    state.totals = snapshot;
    state.snapshots.push([now, snapshot]);
    while (state.snapshots.length > 1 && state.snapshots[0][0] < now - RATE_WINDOW_MS) {
      state.snapshots.shift();
    }
    renderRates(now);
  }

  function renderRates(now) {
    const [since, first] = state.snapshots[0];
    const seconds = Math.max((now - since) / 1000, 1);
    const rows = $("rate-rows");
    const ordered = [...state.totals.entries()].sort((a, b) => b[1] - a[1]);
    const fragment = document.createDocumentFragment();
    for (const [topic, total] of ordered) {
      const row = document.createElement("tr");
      row.dataset.topic = topic;
      cell(row, topic, "topic");
      cell(row, ((total - (first.get(topic) || 0)) / seconds).toFixed(1), "rate");
      cell(row, String(total), "total");
      fragment.appendChild(row);
    }
    rows.replaceChildren(fragment);
  }

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
    state.waiting = 0;
    state.drawAll = !state.paused;
    scheduleDraw();
  });

  $("filter").addEventListener("submit", (e) => {
    e.preventDefault();
    const pattern = $("pattern").value.trim() || "**";
    if (pattern === state.pattern) return;
    // A new filter starts its counts afresh: the history it brings is counted once.
    state.pattern = pattern;
    state.lastId = null;
    state.seen.clear();
    state.seenOrder = new Array(MAX_SEEN);
    state.seenNext = 0;
    state.pending = [];
    state.waiting = 0;
    state.received = 0;
    state.notShown = 0;
    state.lastGap = null;
    state.sampledOut = 0;
    state.totals = new Map();
    state.snapshots = [];
    $("event-rows").replaceChildren();
    $("rate-rows").replaceChildren();
    const url = new URL(window.location.href);
    url.searchParams.set("pattern", pattern);
    window.history.replaceState(null, "", url);
    subscribe(); // replace: the server forgets the old pattern and what it queued for it
    scheduleDraw();
  });
})();
