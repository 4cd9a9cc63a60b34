// braid dashboard: polls the portal's API every second and draws hand-written canvas charts.
// State a test can read: window.braid = {samples, series, sessions, current, lastError}.
"use strict";
(function () {
  const HISTORY = 120; // seconds kept per chart
  const RUNTIME_PARAMETERS = ["keepalive_interval", "dead_interval", "delay_cutoff", "bod_upper", "bod_lower", "redundant_copies"];
  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];
  const state = { samples: 0, series: {}, sessions: [], current: null, lastError: null, prev: {}, role: null };
  window.braid = state;
  const $ = (id) => document.getElementById(id);

  // -- token: #token=... in the URL, else what the operator typed (kept for the tab) --
  const fromHash = new URLSearchParams(location.hash.replace(/^#/, "")).get("token");
  if (fromHash) { sessionStorage.setItem("braid-token", fromHash); history.replaceState(null, "", location.pathname); }
  let token = sessionStorage.getItem("braid-token") || "";
  $("token").value = token;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault(); token = $("token").value.trim(); sessionStorage.setItem("braid-token", token); tick();
  });

  async function api(method, path, body) {
    const init = { method, headers: { Authorization: "Bearer " + token } };
    if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    const resp = await fetch(path, init);
    if (resp.status === 204) return null;
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error((data.error && data.error.message) || resp.status + " " + resp.statusText);
    return data;
  }

  function status(text, cls) { const el = $("status"); el.textContent = text; el.className = "status " + (cls || ""); }
  function message(text, ok) { const el = $("form-message"); el.textContent = text; el.className = "message " + (ok ? "ok" : "bad"); }

  // -- formatting --
  const fmtBytes = (n) => { const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0; while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; } return n.toFixed(i ? 1 : 0) + " " + u[i]; };
  const fmtRate = (bps) => bps == null ? "–" : bps >= 1e9 ? (bps / 1e9).toFixed(2) + " Gbit/s" : bps >= 1e6 ? (bps / 1e6).toFixed(1) + " Mbit/s" : (bps / 1e3).toFixed(0) + " kbit/s";
  const fmtMs = (s) => s == null ? "–" : (s * 1000).toFixed(1) + " ms";
  const fmtPct = (x) => x == null ? "–" : (x * 100).toFixed(2) + " %";
  const fmtTime = (t) => new Date(t * 1000).toLocaleString();
  // "tcp +35 ms, 12034 held", "bulk +35 ms, 812 held, 1 flow marked" or "off" (empty for
  // a portal without equalization).
  function fmtEqualize(params, counters) {
    if (params.equalize == null) return "–";
    if (params.equalize === "off") return "off";
    let text = `${params.equalize} +${((params.equalize_delay || 0) * 1000).toFixed(0)} ms, ${counters.equalized || 0} held`;
    if (params.equalize === "bulk") {
      const n = counters.equalize_flows || 0;
      text += `, ${n} flow${n === 1 ? "" : "s"} marked`;
      if (counters.equalize_ahead) text += ` (${counters.equalize_ahead} ahead of PROBE_RTT so far)`;
      if (counters.equalize_pairs) text += `, ${counters.equalize_pairs} host pair${counters.equalize_pairs === 1 ? "" : "s"} remembered`;
      if ("peer_holds" in params && params.peer_holds !== true) text += " (the peer does not hold: none)";
    }
    return text;
  }
  // "on, 97 % compact, 1.3 MB saved", "on (the peer does not take them)" or "off" (empty
  // for a portal without header compression).
  function fmtCompression(params, counters) {
    if (params.compress_headers == null) return "–";
    if (!params.compress_headers) return "off";
    if (params.peer_compacts === false) return "on (the peer does not take them)";
    const sent = counters.packets_sent || 0;
    const share = sent ? ` ${Math.round(100 * (counters.compacted || 0) / sent)} % compact,` : "";
    return `on,${share} ${fmtBytes(counters.compact_saved || 0)} saved`;
  }
  // "auto (on), 3 recovered, 5 resent", "on, ...", or "off" (empty for an older portal).
  function fmtNack(params, counters) {
    if (params.nack == null) return "–";
    if (params.nack === "off") return "off";
    const mode = params.nack === "auto" ? `auto (${params.nack_active ? "on" : "off"})` : params.nack;
    return `${mode}, ${counters.gaps_recovered || 0} recovered, ${counters.retransmitted || 0} resent`;
  }

  // "1360, 12 SYNs clamped" or "off" (empty for a portal without MSS clamping).
  function fmtMss(params, counters) {
    if (params.clamp_mss == null) return "–";
    if (!params.clamp_mss) return "off";
    const n = counters.mss_clamped || 0;
    return `${params.clamp_mss}, ${n} SYN${n === 1 ? "" : "s"} clamped`;
  }
  // "on, 120 replaced" or "off" (empty for a portal without ACK filtering).
  function fmtAcks(params, counters) {
    if (params.ack_filter == null) return "–";
    if (!params.ack_filter) return "off";
    return `on, ${counters.acks_filtered || 0} replaced`;
  }
  const pathKey = (p) => p.path_id + (p.name ? " " + p.name : "");
  function cell(tr, text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.appendChild(td); return td; }

  // -- series --
  function push(chart, key, t, value) {
    const byKey = state.series[chart] || (state.series[chart] = {});
    const arr = byKey[key] || (byKey[key] = []);
    arr.push([t, value]);
    while (arr.length && arr[0][0] < t - HISTORY) arr.shift();
  }

  function sample(session, t) {
    const prev = state.prev[session.session_id];
    const now = {};
    let sentTotal = 0;
    for (const p of session.paths) now[p.path_id] = p;
    if (prev) {
      const dt = Math.max(0.001, t - prev.t);
      const deltas = {};
      for (const p of session.paths) {
        const q = prev.paths[p.path_id];
        if (!q) continue;
        const d = {
          bytes: Math.max(0, p.bytes_sent - q.bytes_sent + p.bytes_received - q.bytes_received),
          sent: Math.max(0, p.bytes_sent - q.bytes_sent),
          lost: Math.max(0, p.lost - q.lost),
          delivered: Math.max(0, p.delivered - q.delivered),
        };
        deltas[p.path_id] = d; sentTotal += d.sent;
      }
      for (const p of session.paths) {
        const d = deltas[p.path_id];
        if (!d) continue;
        const key = pathKey(p);
        push("throughput", key, t, d.bytes * 8 / dt / 1e6);
        push("rtt", key, t, p.srtt == null ? null : p.srtt * 1000);
        const accounted = d.lost + d.delivered;
        push("loss", key, t, accounted ? 100 * d.lost / accounted : 0);
        push("share", key, t, sentTotal ? 100 * d.sent / sentTotal : 0);
      }
      state.samples += 1;
    }
    state.prev[session.session_id] = { t, paths: now };
  }

  // -- charts (canvas, no library) --
  function draw(id, chart, opts) {
    const canvas = $(id); const ctx = canvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 560, h = canvas.clientHeight || 200;
    if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const series = state.series[chart] || {};
    const keys = Object.keys(series).sort();
    const left = 44, bottom = 18, top = 6, right = 8;
    const now = Date.now() / 1000, t0 = now - HISTORY;
    let max = opts.max || 0;
    if (!opts.max) for (const k of keys) for (const [, v] of series[k]) if (v != null && v > max) max = v;
    max = max > 0 ? niceCeil(max) : 1;
    ctx.strokeStyle = "#dde1e7"; ctx.fillStyle = "#6b7587"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = top + (h - top - bottom) * i / 4;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(w - right, y); ctx.stroke();
      ctx.fillText(fmtAxis(max * (1 - i / 4)), 2, y + 4);
    }
    ctx.fillText("-" + HISTORY + " s", left, h - 4); ctx.fillText("now", w - right - 22, h - 4);
    keys.forEach((k, i) => {
      ctx.strokeStyle = COLORS[i % COLORS.length]; ctx.lineWidth = 1.8; ctx.beginPath();
      let started = false;
      for (const [t, v] of series[k]) {
        if (v == null) { started = false; continue; }
        const x = left + (w - left - right) * (t - t0) / HISTORY;
        const y = top + (h - top - bottom) * (1 - Math.min(v, max) / max);
        if (!started) { ctx.moveTo(x, y); started = true; } else ctx.lineTo(x, y);
      }
      ctx.stroke();
    });
    canvas.dataset.points = String(keys.reduce((n, k) => n + series[k].length, 0));
  }
  function niceCeil(x) { const e = Math.pow(10, Math.floor(Math.log10(x))); for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= x) return m * e; return 10 * e; }
  function fmtAxis(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

  function legend() {
    const series = state.series.throughput || {};
    const el = $("legend"); el.textContent = "";
    Object.keys(series).sort().forEach((k, i) => {
      const s = document.createElement("span"); s.style.setProperty("--c", COLORS[i % COLORS.length]); s.textContent = "path " + k; el.appendChild(s);
    });
  }

  // -- tables and forms --
  function renderSessions() {
    const body = $("sessions").querySelector("tbody"); body.textContent = "";
    for (const s of state.sessions) {
      const tr = document.createElement("tr"); tr.dataset.session = s.session_id;
      if (s.session_id === state.current) tr.className = "selected";
      cell(tr, s.session_id, "mono"); cell(tr, s.peer || "–", "mono"); cell(tr, fmtTime(s.up_since));
      cell(tr, s.parameters.scheduler);
      cell(tr, fmtEqualize(s.parameters, s.counters));
      cell(tr, fmtCompression(s.parameters, s.counters));
      cell(tr, fmtMss(s.parameters, s.counters));
      cell(tr, fmtAcks(s.parameters, s.counters));
      cell(tr, fmtNack(s.parameters, s.counters));
      cell(tr, s.paths.filter((p) => p.state === "up").length + "/" + s.paths.length + " up");
      cell(tr, fmtBytes(s.counters.bytes_sent)); cell(tr, fmtBytes(s.counters.bytes_delivered));
      cell(tr, (s.egress || []).slice(0, 4).join(", ") + ((s.egress || []).length > 4 ? " …" : ""), "mono");
      tr.addEventListener("click", () => { if (state.current !== s.session_id) { state.current = s.session_id; state.series = {}; } render(); });
      body.appendChild(tr);
    }
    if (!state.sessions.length) { const tr = document.createElement("tr"); cell(tr, "no session yet", "dim").colSpan = 12; body.appendChild(tr); }
  }

  function currentSession() { return state.sessions.find((s) => s.session_id === state.current) || null; }

  function renderPaths() {
    const s = currentSession();
    $("current-session").textContent = s ? s.session_id : "–";
    const body = $("paths").querySelector("tbody"); body.textContent = "";
    // The path choices are rebuilt only when the paths change (not every second: an
    // open list, or a choice being made, would be lost).
    const select = $("path-select"); const chosen = select.value;
    const choices = s ? s.paths.map((p) => [String(p.path_id), pathKey(p)]) : [];
    const same = choices.length === select.options.length
      && choices.every(([v, t], i) => select.options[i].value === v && select.options[i].textContent === t);
    if (!same) {
      select.textContent = "";
      for (const [v, t] of choices) { const o = document.createElement("option"); o.value = v; o.textContent = t; select.appendChild(o); }
    }
    if (!s) return;
    for (const p of s.paths) {
      const tr = document.createElement("tr"); tr.dataset.path = p.path_id;
      cell(tr, String(p.path_id)); cell(tr, p.name || "–"); cell(tr, p.endpoint || "–", "mono");
      cell(tr, p.state, p.state); cell(tr, String(p.metric)); cell(tr, p.download_bps ? `${fmtRate(p.rate_bps)} up, ${fmtRate(p.download_bps)} down` : fmtRate(p.rate_bps));
      cell(tr, fmtMs(p.srtt)); cell(tr, fmtPct(p.loss_rate)); cell(tr, fmtBytes(p.bytes_sent)); cell(tr, fmtBytes(p.bytes_received));
      const td = cell(tr, ""); const b = document.createElement("button"); b.textContent = "remove"; b.type = "button";
      b.addEventListener("click", (e) => { e.stopPropagation(); change("DELETE", `/api/v1/sessions/${s.session_id}/paths/${p.path_id}`, undefined, `path ${p.path_id} removed`); });
      td.appendChild(b); body.appendChild(tr);
    }
    if (chosen && [...select.options].some((o) => o.value === chosen)) select.value = chosen;
  }

  function render() {
    renderSessions(); renderPaths(); legend();
    draw("chart-throughput", "throughput", {}); draw("chart-rtt", "rtt", {});
    draw("chart-loss", "loss", {}); draw("chart-share", "share", { max: 100 });
  }

  async function change(method, path, body, done) {
    try { await api(method, path, body); message(done, true); await tick(); }
    catch (err) { message(err.message, false); }
  }

  $("scheduler-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const cls = $("scheduler-class").value, name = $("scheduler-select").value;
    if (cls) change("PATCH", "/api/v1/policies", { classes: { [cls]: { scheduler: name } } }, `class ${cls} scheduler set to ${name}`);
    else change("PATCH", "/api/v1/policies", { scheduler: name }, "scheduler set to " + name);
  });
  $("param-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("param-name").value, value = Number($("param-value").value);
    change("PATCH", "/api/v1/policies", { parameters: { [name]: value } }, `${name} set to ${value}`);
  });
  $("path-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const s = currentSession(); if (!s) { message("no session", false); return; }
    const body = {};
    if ($("path-metric").value !== "") body.metric = Number($("path-metric").value);
    if ($("path-rate").value !== "") body.rate_bps = Math.round(Number($("path-rate").value) * 1e6);
    if ($("path-enabled").value !== "") body.enabled = $("path-enabled").value === "true";
    const pid = $("path-select").value;
    change("PATCH", `/api/v1/sessions/${s.session_id}/paths/${pid}`, body, `path ${pid} updated`);
  });
  $("link-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { name: $("link-name").value, remote: $("link-remote").value, metric: Number($("link-metric").value || 0) };
    if ($("link-interface").value) body.interface = $("link-interface").value;
    if ($("link-source").value) body.source = $("link-source").value;
    if ($("link-rate").value) body.rate_bps = Math.round(Number($("link-rate").value) * 1e6);
    change("POST", "/api/v1/links", body, `link ${body.name} added`);
  });

  let policiesLoaded = false;
  async function tick() {
    try {
      if (!policiesLoaded) {
        const [portal, policies] = await Promise.all([api("GET", "/api/v1/portal"), api("GET", "/api/v1/policies")]);
        state.role = portal.role; $("role").textContent = portal.role + " portal"; $("tunnel").textContent = portal.tunnel;
        $("link-form").hidden = portal.role !== "local";
        const sel = $("scheduler-select"); sel.textContent = "";
        for (const name of policies.schedulers) { const o = document.createElement("option"); o.value = o.textContent = name; sel.appendChild(o); }
        sel.value = policies.scheduler;
        const classSel = $("scheduler-class");
        for (const c of policies.classes || []) { const o = document.createElement("option"); o.value = c.name; o.textContent = "class " + c.name; classSel.appendChild(o); }
        const names = $("param-name"); names.textContent = "";
        for (const name of RUNTIME_PARAMETERS) {
          if (!(name in (policies.parameters || {}))) continue;
          const o = document.createElement("option"); o.value = o.textContent = name; names.appendChild(o);
        }
        const showValue = () => { const v = (policies.parameters || {})[names.value]; $("param-value").placeholder = v == null ? "" : String(v); };
        names.onchange = showValue; showValue();
        policiesLoaded = true;
      }
      const data = await api("GET", "/api/v1/sessions");
      const t = Date.now() / 1000;
      state.sessions = data.sessions;
      if (!state.sessions.some((s) => s.session_id === state.current)) { state.current = state.sessions.length ? state.sessions[0].session_id : null; state.series = {}; }
      for (const s of state.sessions) if (s.session_id === state.current) sample(s, t);
      state.lastError = null;
      status(`${state.sessions.length} session(s), updated ${new Date().toLocaleTimeString()}`, "ok");
    } catch (err) {
      state.lastError = err.message; status(err.message, "bad");
    }
    render();
  }
  tick();
  setInterval(tick, 1000);
})();
