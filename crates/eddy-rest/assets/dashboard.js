// Eddy's dashboard: hash-routed pages rendered from the JobManager's REST API. No framework,
// no build step, no network fetch but this JobManager's own endpoints (docs/dashboard.md).
"use strict";

var REFRESH_MS = 3000;
var timer = null;
var lastRecords = {}; // vertex key -> {t, in, out}: records/s between two refreshes

function esc(v) {
  return String(v === null || v === undefined ? "–" : v)
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
function time(ms) { return ms && ms > 0 ? new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC") : "–"; }
function dur(ms) {
  if (ms === null || ms === undefined || ms < 0) return "–";
  if (ms < 10000) return ms + " ms";
  var s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + (s % 60) + " s";
}
function bytes(n) {
  if (n === null || n === undefined) return "–";
  var u = ["B", "KiB", "MiB", "GiB"], i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
// Back-pressure as Flink grades it: ok up to 0.10, low up to 0.50, else high; "–" before a
// subtask's TaskManager sent two heartbeats.
function backpressure(ratio) {
  if (ratio === null || ratio === undefined) return '<span class="muted">–</span>';
  var level = ratio <= 0.10 ? "ok" : ratio <= 0.50 ? "low" : "high";
  return '<span class="bp bp-' + level + '">' + level + " " + Math.round(ratio * 100) + "%</span>";
}
function state(s) { return '<span class="state ' + esc(s) + '">' + esc(s) + "</span>"; }
function table(headers, rows, id) {
  return '<table' + (id ? ' id="' + id + '"' : "") + "><tr>" + headers.map(function (h) { return "<th>" + h + "</th>"; }).join("") +
    "</tr>" + (rows.length ? rows.map(function (r) { return "<tr>" + r.join("") + "</tr>"; }).join("")
      : '<tr><td colspan="' + headers.length + '" class="muted">none</td></tr>') + "</table>";
}
function td(v, cls) { return "<td" + (cls ? ' class="' + cls + '"' : "") + ">" + v + "</td>"; }
// With eddy.rest.auth.token-file set, every API call needs the bearer token: asked once on
// the first 401, kept in this tab's sessionStorage, sent with every call.
function authHeaders() {
  var t = sessionStorage.getItem("eddy-token");
  return t ? { Authorization: "Bearer " + t } : {};
}
function askToken(r) {
  if (r.status !== 401) return false;
  var t = window.prompt("This Eddy cluster needs its REST token (eddy.rest.auth.token-file):");
  if (t) sessionStorage.setItem("eddy-token", t.trim());
  return !!t;
}
function get(path) {
  return fetch(path, { cache: "no-store", headers: authHeaders() }).then(function (r) {
    if (askToken(r)) return get(path);
    var ct = r.headers.get("content-type") || "";
    var body = ct.indexOf("json") >= 0 ? r.json() : r.text();
    return body.then(function (b) {
      if (!r.ok) throw new Error((b && b.errors ? b.errors.join("; ") : String(b)) + " (HTTP " + r.status + ")");
      return b;
    });
  });
}

function overview() {
  return Promise.all([get("/overview"), get("/jobs/overview"), get("/jobmanager/eddy-info")]).then(function (a) {
    var o = a[0], jobs = a[1].jobs, info = a[2], byState = {};
    jobs.forEach(function (j) { byState[j.state] = (byState[j.state] || 0) + 1; });
    var card = function (k, v) { return '<div class="card"><div class="muted">' + k + '</div><div class="v">' + v + "</div></div>"; };
    return "<h1>Overview</h1><div class=\"cards\">" +
      card("Version", esc(o["flink-version"])) + card("Uptime", dur(info.uptime)) +
      card("TaskManagers", o.taskmanagers) + card("Slots total", o["slots-total"]) +
      card("Slots free", o["slots-available"]) + "</div>" +
      "<h2>Jobs by state</h2>" + table(["State", "Jobs"], Object.keys(byState).sort().map(function (s) {
        return [td(state(s)), td(byState[s], "num")];
      }), "jobs-by-state") +
      "<h2>Jobs</h2>" + table(["Name", "Job id", "State", "Started", "Duration", "Tasks"], jobs.map(function (j) {
        return [td(esc(j.name)), td('<a href="#/job/' + esc(j.jid) + '">' + esc(j.jid) + "</a>"), td(state(j.state)),
          td(time(j["start-time"])), td(dur(j.duration), "num"), td(j.tasks.running + " / " + j.tasks.total + " running")];
      }), "jobs");
  });
}

function jobmanager() {
  return Promise.all([get("/jobmanager/eddy-info"), get("/jobmanager/log").catch(function (e) { return "(" + e.message + ")"; })]).then(function (a) {
    var i = a[0], ha = i["high-availability"];
    var kv = function (k, v) { return [td(k), td(v)]; };
    var rows = [
      kv("REST address", esc(i["rest-address"])), kv("RPC address", esc(i["rpc-address"])),
      kv("Role", i.leader ? '<span id="role" class="leader">leader</span>' : '<span id="role" class="standby">standby</span>'),
      kv("Leader session id", '<code id="session">' + esc(i["leader-session-id"]) + "</code>"),
      kv("Process id", esc(i.pid)), kv("Started", time(i.started)), kv("Uptime", dur(i.uptime)),
      kv("Version", esc(i.version)), kv("High availability", esc(ha.type))
    ];
    Object.keys(ha).filter(function (k) { return k !== "type"; }).forEach(function (k) { rows.push(kv("HA " + esc(k), esc(ha[k]))); });
    return "<h1>JobManager</h1>" + table(["", ""], rows, "jobmanager") +
      "<h2>Log (tail)</h2><pre class=\"log\" id=\"log\">" + esc(a[1]) + "</pre>" +
      "<h2>Effective configuration</h2>" + table(["Key", "Value", "Source"], i["effective-configuration"].map(function (e) {
        return [td(esc(e.key)), td(esc(e.value)), td('<span class="muted">' + esc(e.source) + "</span>")];
      }), "config");
  });
}

function taskmanagers() {
  return get("/taskmanagers").then(function (v) {
    var row = function (t, lost) {
      return [td(esc(t.id)), td(lost ? '<span class="lost">lost</span>' : '<span class="RUNNING">registered</span>'),
        td(esc(t.path)), td(esc(t.pid), "num"), td(lost ? esc(t.slotsNumber) : t.freeSlots + " free / " + t.slotsNumber, "num"),
        td(t.timeSinceLastHeartbeat === null || t.timeSinceLastHeartbeat < 0 ? "–" : dur(t.timeSinceLastHeartbeat) + " ago", "num"),
        td(time(t.registeredSince)), td(lost ? time(t.lostAt) + "<br>" + esc(t.lostReason) : "")];
    };
    var rows = v.taskmanagers.map(function (t) { return row(t, false); })
      .concat((v["lost-taskmanagers"] || []).slice().reverse().map(function (t) { return row(t, true); }));
    return "<h1>TaskManagers</h1>" + table(["Id", "Status", "Address", "PID", "Slots", "Last heartbeat", "Registered since", "Lost"], rows, "taskmanagers");
  });
}

// Checkpoint durations (ms, bars) and sizes (bytes, line) over time, oldest left.
function checkpointChart(history) {
  var cps = history.filter(function (c) { return c.status === "COMPLETED"; }).slice().reverse();
  if (!cps.length) return '<p class="muted">no completed checkpoints yet</p>';
  var W = 640, H = 160, P = 40, n = cps.length, bw = (W - 2 * P) / n;
  var maxD = Math.max.apply(null, cps.map(function (c) { return c.end_to_end_duration || 0; }).concat([1]));
  var maxS = Math.max.apply(null, cps.map(function (c) { return c.state_size || 0; }).concat([1]));
  var out = '<svg id="checkpoint-chart" width="' + W + '" height="' + (H + 30) + '">';
  out += '<line x1="' + P + '" y1="' + H + '" x2="' + (W - P) + '" y2="' + H + '" stroke="#999"/>';
  var pts = [];
  cps.forEach(function (c, i) {
    var d = c.end_to_end_duration || 0, h = (H - 10) * d / maxD, x = P + i * bw;
    out += '<rect x="' + (x + 2) + '" y="' + (H - h) + '" width="' + Math.max(bw - 4, 1) + '" height="' + h + '" fill="#4a78c2"><title>#' + c.id + ": " + d + " ms, " + bytes(c.state_size) + "</title></rect>";
    out += '<text x="' + (x + bw / 2) + '" y="' + (H + 14) + '" text-anchor="middle">' + c.id + "</text>";
    pts.push((x + bw / 2) + "," + (H - (H - 10) * (c.state_size || 0) / maxS));
  });
  out += '<polyline points="' + pts.join(" ") + '" fill="none" stroke="#e07b00" stroke-width="2"/>';
  out += '<text x="2" y="12">' + maxD + ' ms</text><text x="' + (W - P + 2) + '" y="12">' + bytes(maxS) + "</text>";
  out += '<text x="' + W / 2 + '" y="' + (H + 28) + '" text-anchor="middle">checkpoint id</text></svg>';
  return out + '<div class="legend"><span><i style="background:#4a78c2"></i>duration (ms)</span><span><i style="background:#e07b00"></i>size</span></div>';
}

// Each recovery as a row of bars on a common millisecond axis from its detection:
// detection → restart decision, decision → restore and deploy, deploy → RUNNING.
function recoveryTimeline(recs) {
  if (!recs.length) return '<p class="muted">no recoveries</p>';
  var span = Math.max.apply(null, recs.map(function (r) { return (r.running || r.deployed || r.decided) - r.detected; }).concat([1]));
  var W = 720, L = 150, R = 20, row = 26, H = recs.length * row + 30, sx = (W - L - R) / span;
  var out = '<svg id="recovery-timeline" width="' + W + '" height="' + H + '">';
  for (var k = 0; k <= 4; k++) {
    var t = Math.round(span * k / 4), x = L + t * sx;
    out += '<line x1="' + x + '" y1="0" x2="' + x + '" y2="' + (H - 20) + '" stroke="#e3e3e3"/><text x="' + x + '" y="' + (H - 6) + '" text-anchor="middle">' + t + " ms</text>";
  }
  recs.forEach(function (r, i) {
    var y = i * row + 4, phases = [
      ["detection → decision", r.detected, r.decided, "#c62828"],
      ["restore + deploy", r.decided, r.deployed, "#b26a00"],
      ["deploy → RUNNING", r.deployed, r.running, "#1a7f37"]];
    out += '<text x="0" y="' + (y + 14) + '">#' + (i + 1) + " " + time(r.detected).slice(11, 23) + "</text>";
    phases.forEach(function (p) {
      if (p[1] === null || p[2] === null || p[2] === undefined) return;
      var x = L + (p[1] - r.detected) * sx, w = Math.max((p[2] - p[1]) * sx, 2);
      out += '<rect class="phase" x="' + x + '" y="' + y + '" width="' + w + '" height="18" fill="' + p[3] + '"><title>' + p[0] + ": " + (p[2] - p[1]) + " ms</title></rect>";
    });
    out += '<text x="' + (W - R) + '" y="' + (y + 14) + '" text-anchor="end">' + (r.running ? (r.running - r.detected) + " ms" : "in progress") + "</text>";
  });
  out += "</svg>";
  return out + '<div class="legend"><span><i style="background:#c62828"></i>detection → restart decision</span><span><i style="background:#b26a00"></i>restore + deploy</span><span><i style="background:#1a7f37"></i>deploy → RUNNING</span></div>';
}

function job(id) {
  var p = "/jobs/" + encodeURIComponent(id);
  return Promise.all([get(p), get(p + "/eddy-details"), get(p + "/checkpoints"), get(p + "/exceptions?maxExceptions=20"), get(p + "/recoveries")]).then(function (a) {
    var j = a[0], d = a[1], cp = a[2], ex = a[3].exceptionHistory.entries, rec = a[4].recoveries, now = Date.now();
    var vrows = d.vertices.map(function (v) {
      var key = id + "/" + v.id, prev = lastRecords[key], rate = function (cur, old) {
        return prev && now > prev.t ? Math.max(0, Math.round((cur - old) * 1000 / (now - prev.t))) + "/s" : "–";
      };
      var bp = null;
      (v.subtasks || []).forEach(function (s) { if (s.backpressure && (bp === null || s.backpressure.ratio > bp)) bp = s.backpressure.ratio; });
      var r = [td(esc(v.name)), td(v.parallelism, "num"), td(state(v.status)), td(v.records_in, "num"), td(rate(v.records_in, prev && prev["in"]), "num"),
        td(v.records_out, "num"), td(rate(v.records_out, prev && prev.out), "num"), td(backpressure(bp))];
      lastRecords[key] = { t: now, "in": v.records_in, out: v.records_out };
      return r;
    });
    var srows = [];
    d.vertices.forEach(function (v) {
      (v.subtasks || []).forEach(function (s) {
        srows.push([td(esc(v.name) + " (" + (s.subtask + 1) + "/" + v.parallelism + ")"), td(state(s.state)), td(esc(s.taskmanager)),
          td((v.subtask_deployments || [])[s.subtask], "num"), td(s.records_in, "num"), td(s.records_out, "num"),
          td(backpressure(s.backpressure ? s.backpressure.ratio : null)), td(time(s.deployed_at))]);
      });
    });
    var crows = cp.history.map(function (c) {
      return [td(c.id, "num"), td(state(c.status)), td(time(c.trigger_timestamp)), td(dur(c.end_to_end_duration), "num"),
        td(bytes(c.state_size), "num"), td(c.num_acknowledged_subtasks + " / " + c.num_subtasks, "num")];
    });
    var erows = ex.map(function (e) { return [td(time(e.timestamp)), td(esc(e.taskName)), td(esc(e.taskManagerId)), td("<code>" + esc(e.stacktrace) + "</code>")]; });
    var rrows = rec.map(function (r, i) {
      return [td(i + 1, "num"), td(time(r.detected)), td(r.durations.decision + " ms", "num"), td(dur(r.durations["restore-and-deploy"]), "num"),
        td(dur(r.durations["deploy-to-running"]), "num"), td(dur(r.durations.total), "num"), td(esc(r["restored-checkpoint"]), "num"), td(esc(r.cause))];
    });
    var ended = ["FINISHED", "FAILED", "CANCELED"].indexOf(j.state) >= 0;
    return "<h1>Job " + esc(j.name) + " " + state(j.state) + "</h1>" +
      '<p class="muted">' + esc(j.jid) + " · started " + time(j["start-time"]) + " · " + dur(j.duration) + " · " + j.restarts + " restarts</p>" +
      (ended ? "" : '<button id="savepoint">Trigger savepoint</button> <button id="stop-savepoint">Stop with savepoint</button> ' +
        '<button class="danger" id="cancel">Cancel job</button>') +
      (lastAction && lastAction.job === j.jid ? '<p id="action-result" class="' + (lastAction.ok ? "muted" : "error") + '">' + esc(lastAction.text) + "</p>" : "") +
      "<h2>Vertices</h2>" + table(["Vertex", "Parallelism", "State", "Records in", "In rate", "Records out", "Out rate", "Back-pressure"], vrows, "vertices") +
      "<h2>Subtasks</h2>" + table(["Subtask", "State", "TaskManager", "Deployments", "Records in", "Records out", "Back-pressure", "Deployed"], srows, "subtasks") +
      "<h2>Recoveries</h2>" + recoveryTimeline(rec) +
      table(["#", "Detected", "Decision", "Restore + deploy", "Deploy → RUNNING", "Total", "Checkpoint", "Cause"], rrows, "recoveries") +
      "<h2>Checkpoints</h2>" + '<p id="checkpoint-counts">' + esc(cp.counts.completed) + " completed, " + esc(cp.counts.failed) + " failed</p>" +
      checkpointChart(cp.history) + table(["Id", "Status", "Triggered", "Duration", "Size", "Acknowledged"], crows, "checkpoints") +
      "<h2>Exceptions</h2>" + table(["Time", "Task", "TaskManager", "Exception"], erows, "exceptions");
  });
}

// The outcome of the last savepoint / stop-with-savepoint started here, shown on the job page
// across refreshes: {job, ok, text}.
var lastAction = null;

// Triggers a savepoint (stop: stop-with-savepoint) of `jid` into the cluster's default
// savepoint directory and follows the operation until it completes or fails.
function savepointAction(jid, stop) {
  var what = stop ? "Stop with savepoint" : "Savepoint";
  var base = "/jobs/" + encodeURIComponent(jid);
  var body = stop ? {} : { "cancel-job": false };
  lastAction = { job: jid, ok: true, text: what + " in progress" };
  var report = function (ok, text) { lastAction = { job: jid, ok: ok, text: text }; render(); };
  var failed = function (r) {
    return r.json().then(function (b) { report(false, what + " failed: " + (b.errors || []).join("; ")); });
  };
  fetch(base + (stop ? "/stop" : "/savepoints"), { method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()), body: JSON.stringify(body) })
    .then(function (r) {
      if (!r.ok) return failed(r);
      return r.json().then(function (t) {
        var poll = function () {
          fetch(base + "/savepoints/" + encodeURIComponent(t["request-id"]), { headers: authHeaders() }).then(function (r) {
            if (!r.ok) return failed(r);
            return r.json().then(function (st) {
              if (st.status.id !== "COMPLETED") { setTimeout(poll, 500); return; }
              var op = st.operation || {};
              if (op.location) report(true, what + " completed: " + op.location);
              else report(false, what + " failed: " + (op["failure-cause"] && op["failure-cause"]["stack-trace"] || "no cause given"));
            });
          }).catch(function (e) { report(false, what + ": " + e.message); });
        };
        poll();
      });
    }).catch(function (e) { report(false, what + ": " + e.message); });
  render();
}

function bindActions(route) {
  var jid = route[1];
  var b = document.getElementById("cancel");
  if (!b) return;
  b.onclick = function () {
    if (!window.confirm("Cancel job " + jid + "?")) return;
    fetch("/jobs/" + encodeURIComponent(jid) + "?mode=cancel", { method: "PATCH", headers: authHeaders() }).then(function (r) {
      if (!r.ok) return r.json().then(function (b) { alert("Cancel failed: " + (b.errors || []).join("; ")); });
      render();
    });
  };
  document.getElementById("savepoint").onclick = function () {
    if (window.confirm("Trigger a savepoint of job " + jid + "?")) savepointAction(jid, false);
  };
  document.getElementById("stop-savepoint").onclick = function () {
    if (window.confirm("Stop job " + jid + " with a savepoint?")) savepointAction(jid, true);
  };
}

function render() {
  clearTimeout(timer);
  var route = (location.hash.replace(/^#\/?/, "") || "overview").split("/");
  var pages = { overview: overview, jobmanager: jobmanager, taskmanagers: taskmanagers, job: function () { return job(route[1]); } };
  var page = pages[route[0]] || overview;
  page().then(function (html) {
    document.getElementById("page").innerHTML = html;
    var log = document.getElementById("log");
    if (log) log.scrollTop = log.scrollHeight; // the newest lines
    bindActions(route);
  }).catch(function (e) {
    document.getElementById("page").innerHTML = '<p class="error">' + esc(e.message) + '</p><p>If this JobManager became a standby, <a href="/">its start page</a> links to the leader.</p>';
  }).then(function () {
    document.getElementById("refreshed").textContent = "refreshed " + new Date().toISOString().slice(11, 19) + " UTC";
    timer = setTimeout(render, REFRESH_MS);
  });
}

window.addEventListener("hashchange", render);
render();
