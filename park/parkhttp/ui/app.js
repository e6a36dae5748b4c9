// The operator's live view of a call park lot (docs/OPERATOR.md): the orbit
// grid with a countdown to each recall, an event log, and buttons to recall
// or hang up a call. It follows api/events; a snapshot replaces everything
// it knew, each later event changes one call.
//
// Parties, parkers and targets come from SIP headers that callers choose:
// they are only ever set as textContent, never parsed as HTML.
"use strict";

(() => {
  const MAX_CELLS = 200; // more orbits than this: show only the occupied ones
  const MAX_LOG = 200;
  const RETRY_MS = 5000;
  const CONFIG_MS = 30000; // no event says the ranges changed: look again this often
  const KINDS = ["snapshot", "parked", "replaced", "ringing", "ring-failed", "moved", "ended"];
  const LABELS = { free: "free", parked: "parked", recalling: "ringing back", forwarding: "forwarding" };

  // The token the page was opened with (?access_token=), sent on every request.
  const token = new URLSearchParams(location.search).get("access_token");

  const lot = {
    sections: [], // one per orbit range, plus "other" for orbits in none
    compact: false,
    fallback: "",
    calls: new Map(), // orbit -> call as in api/calls, plus target, attempt, note
    offset: 0, // the server's clock minus ours (ms), from the snapshot's now
  };
  const cells = new Map(); // orbit -> {el, sig, left, recallAt}

  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // api calls the admin API; a failure throws the JSON error's text.
  async function api(method, path) {
    const headers = {};
    if (token) headers.Authorization = "Bearer " + token;
    const res = await fetch(path, { method, headers, cache: "no-store" });
    if (!res.ok) {
      let msg = `${res.status} ${res.statusText}`;
      try {
        const body = await res.json();
        if (body && body.error) msg = body.error;
      } catch (_) {
        // not JSON: the status says enough
      }
      throw new Error(msg);
    }
    return res.status === 204 ? null : res.json();
  }

  // parseRange reads "701-799", "*7000-*7099", "#100-#199" or one orbit:
  // the same prefix and the same number of digits at both ends.
  function parseRange(text) {
    const m = /^([*#]?)(\d+)(?:-([*#]?)(\d+))?$/.exec(String(text).trim());
    if (!m) return null;
    const hiPrefix = m[4] === undefined ? m[1] : m[3];
    const hiDigits = m[4] === undefined ? m[2] : m[4];
    if (hiPrefix !== m[1] || hiDigits.length !== m[2].length) return null;
    const lo = Number(m[2]);
    const hi = Number(hiDigits);
    if (hi < lo) return null;
    return { text: String(text).trim(), prefix: m[1], width: m[2].length, lo, hi, size: hi - lo + 1 };
  }

  function orbitName(r, n) {
    return r.prefix + String(n).padStart(r.width, "0");
  }

  // numberIn returns the orbit's number if it lies in range r, else null.
  function numberIn(r, orbit) {
    if (!r.width || !orbit.startsWith(r.prefix)) return null;
    const digits = orbit.slice(r.prefix.length);
    if (digits.length !== r.width || !/^\d+$/.test(digits)) return null;
    const n = Number(digits);
    return n >= r.lo && n <= r.hi ? n : null;
  }

  function sectionOf(orbit) {
    return lot.sections.find((s) => s.width && numberIn(s, orbit) !== null) || lot.sections[lot.sections.length - 1];
  }

  function buildGrid(ranges) {
    const grid = $("grid");
    grid.replaceChildren();
    cells.clear();
    lot.sections = ranges.map(parseRange).filter(Boolean);
    lot.sections.push({ text: "other orbits", prefix: "", width: 0, size: 0, other: true });
    lot.compact = lot.sections.reduce((n, s) => n + s.size, 0) > MAX_CELLS;
    for (const s of lot.sections) {
      s.el = el("section", "range");
      s.el.dataset.range = s.text;
      const heading = el("h3", null, s.text + " ");
      s.free = el("span", "free-count");
      heading.append(s.free);
      s.list = el("ul", "cells");
      s.el.append(heading, s.list);
      grid.append(s.el);
    }
  }

  // shown lists the orbits a section shows: all of them, or only the
  // occupied ones on a big lot (and always for orbits outside every range).
  function shown(s) {
    const occupied = [];
    for (const orbit of lot.calls.keys()) {
      if (sectionOf(orbit) === s) occupied.push(orbit);
    }
    if (s.other || lot.compact) {
      const key = (o) => (s.other ? o : numberIn(s, o));
      return occupied.sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
    }
    const all = [];
    for (let n = s.lo; n <= s.hi; n++) all.push(orbitName(s, n));
    return all;
  }

  function render() {
    let parked = 0;
    let ringing = 0;
    for (const c of lot.calls.values()) {
      if (c.display === "parked") parked++;
      else ringing++;
    }
    let free = 0;
    for (const s of lot.sections) {
      const orbits = shown(s);
      sync(s.list, orbits);
      const used = s.other ? orbits.length : orbits.filter((o) => lot.calls.has(o)).length;
      const sFree = s.other ? 0 : s.size - (lot.compact ? orbits.length : used);
      free += sFree;
      s.free.textContent = s.other ? "" : `${sFree} free`;
      s.free.dataset.free = String(sFree);
      s.el.hidden = Boolean(s.other && orbits.length === 0);
    }
    $("summary").textContent = `${parked} parked · ${ringing} ringing · ${free} free`;
    tick();
  }

  // sync makes list hold the cells of orbits in that order, reusing the
  // cells it has so that a button keeps its focus across unrelated events.
  function sync(list, orbits) {
    orbits.forEach((orbit, i) => {
      let cell = cells.get(orbit);
      if (!cell) {
        cell = { el: el("li", "cell"), sig: "" };
        cell.el.dataset.orbit = orbit;
        cells.set(orbit, cell);
      }
      fill(cell, orbit);
      if (list.children[i] !== cell.el) list.insertBefore(cell.el, list.children[i] || null);
    });
    while (list.children.length > orbits.length) {
      const gone = list.lastElementChild;
      cells.delete(gone.dataset.orbit);
      gone.remove();
    }
  }

  // fill draws one orbit's cell, only when what it shows has changed.
  function fill(cell, orbit) {
    const c = lot.calls.get(orbit);
    const st = c ? c.display : "free";
    const sig = JSON.stringify(c ? [st, c.park_id, c.party, c.parker, c.node, c.target, c.attempt, c.note, c.recall_at] : st);
    if (sig === cell.sig) return;
    cell.sig = sig;
    const li = cell.el;
    li.dataset.state = st;
    li.replaceChildren(el("span", "orbit", orbit), el("span", "label", LABELS[st]));
    cell.left = null;
    if (!c) return;
    li.append(el("span", "party", c.party || "unknown caller"));
    if (st === "parked") {
      li.append(el("span", "by", c.parker ? "parked by " + c.parker : "parker unknown"));
      cell.recallAt = Date.parse(c.recall_at);
      if (!Number.isNaN(cell.recallAt)) {
        cell.left = el("span", "left");
        li.append(cell.left);
      }
    } else {
      const target = c.target || (st === "forwarding" ? lot.fallback : c.parker);
      li.append(el("span", "ringing", "ringing " + (target || "…")));
    }
    if (c.node) li.append(el("span", "node", "on node " + c.node));
    if (c.note) li.append(el("span", "note", c.note));
    const actions = el("span", "actions");
    const recallBtn = button("Recall", `Recall the call in orbit ${orbit} to its parker now`, () => recall(c));
    recallBtn.disabled = st !== "parked"; // already ringing
    const hangupBtn = button("Hang up", `Hang up the call in orbit ${orbit}`, () => hangUp(c));
    hangupBtn.classList.add("danger");
    actions.append(recallBtn, hangupBtn);
    li.append(actions);
  }

  function button(text, title, onClick) {
    const b = el("button", null, text);
    b.type = "button";
    b.title = title;
    b.setAttribute("aria-label", title);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await onClick();
      } finally {
        b.disabled = false;
      }
    });
    return b;
  }

  // tick counts each parked call down to its recall, on the server's clock.
  function tick() {
    const now = Date.now() + lot.offset;
    for (const cell of cells.values()) {
      if (!cell.left) continue;
      // Rounded: the clock offset is only good to the stream's latency,
      // and a 90 s timeout should start at 1:30, not 1:31.
      const secs = Math.max(0, Math.round((cell.recallAt - now) / 1000));
      if (cell.left.dataset.left === String(secs)) continue;
      cell.left.dataset.left = String(secs);
      const m = Math.floor(secs / 60);
      const s = String(secs % 60).padStart(2, "0");
      cell.left.textContent = secs > 0 ? `recall in ${m}:${s}` : "recall due";
    }
  }

  function callPath(c) {
    return `api/calls/${encodeURIComponent(c.orbit)}`;
  }

  async function recall(c) {
    try {
      await api("POST", `${callPath(c)}/recall?park_id=${encodeURIComponent(c.park_id)}`);
    } catch (e) {
      notice(`Recall ${c.orbit}: ${e.message}`);
    }
  }

  async function hangUp(c) {
    if (!confirm(`Hang up the call in orbit ${c.orbit} (${c.party || "unknown caller"})?`)) return;
    try {
      await api("DELETE", `${callPath(c)}?park_id=${encodeURIComponent(c.park_id)}`);
    } catch (e) {
      notice(`Hang up ${c.orbit}: ${e.message}`);
    }
  }

  let noticeTimer = 0;
  function notice(text) {
    const n = $("notice");
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => (n.hidden = true), 10000);
  }

  // upsert records the call as an event tells it, keeping what only earlier
  // events said (who is being rung) while the same call still rings.
  function upsert(call) {
    const prev = lot.calls.get(call.orbit);
    const c = Object.assign({}, call);
    c.display = call.state === "recalling" || call.state === "forwarding" ? call.state : "parked";
    if (prev && prev.park_id === c.park_id && prev.display === c.display && c.display !== "parked") {
      c.target = prev.target;
      c.attempt = prev.attempt;
      c.note = prev.note;
    }
    lot.calls.set(c.orbit, c);
    return c;
  }

  // describe says in a few words what an event did, for the log.
  function describe(ev) {
    const c = ev.call || {};
    const attempt = ev.attempt ? ` (attempt ${ev.attempt})` : "";
    const why = ev.error ? `: ${ev.error}` : "";
    switch (ev.kind) {
      case "parked":
        return `parked ${c.party || "unknown caller"}` + (c.parker ? ` by ${c.parker}` : "");
      case "replaced":
        return `replaced: now ${c.party || "unknown caller"}`;
      case "moved":
        return c.node ? `moved to node ${c.node}` : "taken over by this node";
      case "ringing":
        return `${ev.purpose || "recall"} ringing ${ev.target}${attempt}`;
      case "ring-failed":
        return `${ev.purpose || "recall"} to ${ev.target} failed${why}${attempt}`;
      case "ended":
        return (ev.outcome || "ended") + why;
    }
    return ev.kind;
  }

  function apply(ev) {
    const c = ev.call;
    if (ev.kind !== "snapshot" && !(c && typeof c.orbit === "string")) return;
    switch (ev.kind) {
      case "snapshot": {
        const now = Date.parse(ev.now);
        if (!Number.isNaN(now)) lot.offset = now - Date.now();
        lot.calls = new Map();
        for (const call of ev.calls || []) upsert(call);
        const n = lot.calls.size;
        log(ev.now, "", `now following the lot: ${n} call${n === 1 ? "" : "s"} parked`, "snapshot");
        break;
      }
      case "parked":
      case "replaced":
      case "moved":
        upsert(c);
        break;
      case "ringing": {
        const r = upsert(c);
        r.target = ev.target;
        r.attempt = ev.attempt;
        r.note = "";
        break;
      }
      case "ring-failed":
        upsert(c).note = describe(ev);
        break;
      case "ended": {
        const held = lot.calls.get(c.orbit);
        if (held && held.park_id === c.park_id) lot.calls.delete(c.orbit);
        break;
      }
      default:
        return; // a kind this page does not know yet
    }
    if (ev.kind !== "snapshot") log(ev.time, c.orbit, describe(ev), ev.kind);
    scheduleRender();
  }

  // scheduleRender draws once per frame however many events came: a
  // reconnection can bring hundreds at once.
  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      renderPending = false;
      render();
    });
  }

  function clock(t) {
    const d = t ? new Date(t) : new Date();
    if (Number.isNaN(d.getTime())) return "";
    return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
  }

  function log(time, orbit, text, kind) {
    const li = el("li");
    li.dataset.kind = kind;
    const t = el("time", null, clock(time));
    if (time) t.dateTime = time;
    li.append(t, el("span", "orbit", orbit || "·"), el("span", "what", text));
    const list = $("log");
    list.prepend(li);
    while (list.children.length > MAX_LOG) list.lastElementChild.remove();
  }

  function setStatus(s) {
    const e = $("status");
    e.textContent = s;
    e.dataset.state = s;
  }

  let opened = 0; // streams opened, reconnections included

  function follow() {
    const url = "api/events" + (token ? "?access_token=" + encodeURIComponent(token) : "");
    const es = new EventSource(url);
    setStatus("connecting");
    es.onopen = () => {
      setStatus("live");
      // Back after a break: the server may have restarted or reloaded.
      if (opened++ > 0) refreshConfig();
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) {
        // EventSource gives up on an HTTP error (401, 503 while the server
        // stops): start a new stream later, which begins with a snapshot.
        setStatus("offline");
        es.close();
        setTimeout(follow, RETRY_MS);
      } else {
        setStatus("reconnecting"); // EventSource retries with Last-Event-ID
      }
    };
    const onEvent = (msg) => {
      let ev;
      try {
        ev = JSON.parse(msg.data);
      } catch (_) {
        return;
      }
      if (ev && typeof ev === "object") apply(ev);
    };
    // Events come as plain messages; named ones ("event: parked") too.
    es.onmessage = onEvent;
    for (const k of KINDS) es.addEventListener(k, onEvent);
  }

  // loadConfig reads the lot's configuration, and redraws the grid when
  // its ranges have changed (a reload, or a restart behind the stream):
  // at the start, on every reconnection, and every CONFIG_MS.
  let rangesKey = null;
  async function loadConfig() {
    const cfg = await api("GET", "api/config");
    lot.fallback = cfg.fallback || "";
    $("node").textContent = [cfg.cluster, cfg.node].filter(Boolean).join(" / ");
    const key = JSON.stringify(cfg.orbits || []);
    if (key !== rangesKey) {
      rangesKey = key;
      buildGrid(cfg.orbits || []);
      render();
    }
  }

  function refreshConfig() {
    loadConfig().catch((e) => notice(`Reading the configuration: ${e.message}`));
  }

  async function start() {
    try {
      await loadConfig();
    } catch (e) {
      setStatus("offline");
      notice(`Reading the configuration: ${e.message}`);
      setTimeout(start, RETRY_MS);
      return;
    }
    follow();
    setInterval(tick, 250);
    setInterval(refreshConfig, CONFIG_MS);
  }

  start();
})();
