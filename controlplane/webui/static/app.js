// Petrel's web view. Every object comes from the API, read with the
// credentials this page was loaded with: each list is followed by a watch,
// so the tables change as the cluster does, without a reload. Objects are
// put on the page as text only (textContent), never as markup.
"use strict";

const domain = document.body.dataset.clusterDomain || "cluster.local";
const state = {
  nodes: new Map(), pods: new Map(), deployments: new Map(), statefulsets: new Map(),
  daemonsets: new Map(), services: new Map(), slices: new Map(), events: new Map(),
};
const denied = {};
let traffic = { rows: [], rates: new Map(), note: "" };
const sources = [
  ["nodes", "/api/v1/nodes"],
  ["pods", "/api/v1/pods"],
  ["deployments", "/apis/apps/v1/deployments"],
  ["statefulsets", "/apis/apps/v1/statefulsets"],
  ["daemonsets", "/apis/apps/v1/daemonsets"],
  ["services", "/api/v1/services"],
  ["slices", "/apis/discovery.k8s.io/v1/endpointslices"],
  ["events", "/api/v1/events"],
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const key = (o) => (o.metadata.namespace || "") + "/" + o.metadata.name;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// listWatch keeps state[name] equal to the API's collection: a list, then
// a watch from its resourceVersion, again after any break.
async function listWatch(name, path) {
  for (;;) {
    try {
      const list = await fetch(path, { headers: { Accept: "application/json" } });
      if (list.status === 401 || list.status === 403) {
        denied[name] = (await list.json()).message || list.statusText;
        schedule();
        await sleep(30000);
        continue;
      }
      if (!list.ok) throw new Error(path + ": " + list.status);
      delete denied[name];
      const body = await list.json();
      const m = state[name];
      m.clear();
      for (const o of body.items || []) m.set(key(o), o);
      schedule();
      const w = await fetch(path + "?watch=1&allowWatchBookmarks=true&resourceVersion=" + body.metadata.resourceVersion,
        { headers: { Accept: "application/json" } });
      if (!w.ok) throw new Error(path + " watch: " + w.status);
      live(true);
      const reader = w.body.getReader();
      const dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (!line) continue;
          const ev = JSON.parse(line);
          if (ev.type === "ERROR") throw new Error(ev.object && ev.object.message);
          if (ev.type === "BOOKMARK") continue;
          if (ev.type === "DELETED") m.delete(key(ev.object));
          else m.set(key(ev.object), ev.object);
          schedule();
        }
      }
    } catch (e) {
      live(false, String(e));
    }
    await sleep(1000);
  }
}

function live(ok, why) {
  const e = document.getElementById("live");
  e.textContent = ok ? "live" : "reconnecting…";
  e.className = ok ? "live ok" : "live";
  e.title = why || "";
}

let pending = false;
function schedule() {
  if (pending) return;
  pending = true;
  setTimeout(() => { pending = false; render(); }, 100);
}

function age(ts) {
  if (!ts) return "";
  const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  if (s < 120) return Math.floor(s) + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

function fill(section, rows, empty) {
  const tbody = document.querySelector("#" + section + " tbody");
  const cols = document.querySelectorAll("#" + section + " thead th").length;
  if (denied[section]) rows = [[el("span", { class: "bad" }, "not permitted: " + denied[section])]];
  else if (!rows.length) rows = [[empty || "none"]];
  tbody.replaceChildren(...rows.map((r) => {
    const tr = el("tr");
    r.forEach((c, i) => {
      const td = el("td", c && c.num ? { class: "num" } : {}, c && c.num ? c.num : c);
      if (r.length === 1 && cols > 1 && i === 0) td.setAttribute("colspan", cols);
      tr.append(td);
    });
    return tr;
  }));
}

const byKey = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
const sorted = (m) => [...m.values()].sort((a, b) => byKey(key(a), key(b)));
const n = (v) => ({ num: String(v) });

function podStatus(p) {
  if (p.metadata.deletionTimestamp) return "Terminating";
  for (const c of (p.status && p.status.containerStatuses) || []) {
    if (c.state && c.state.waiting && c.state.waiting.reason) return c.state.waiting.reason;
    if (c.state && c.state.terminated && c.state.terminated.reason && p.status.phase === "Running") return c.state.terminated.reason;
  }
  return (p.status && p.status.phase) || "Pending";
}

function render() {
  const podsOn = new Map();
  for (const p of state.pods.values()) {
    const node = p.spec.nodeName || "(unscheduled)";
    podsOn.set(node, (podsOn.get(node) || 0) + 1);
  }
  fill("nodes", sorted(state.nodes).map((nd) => {
    const ready = ((nd.status && nd.status.conditions) || []).find((c) => c.type === "Ready");
    const ok = ready && ready.status === "True";
    return [nd.metadata.name, el("span", { class: ok ? "good" : "bad" }, ok ? "Ready" : "NotReady"),
      ((nd.status && nd.status.addresses) || []).map((a) => a.address).join(", "), nd.spec.podCIDR || "",
      n(podsOn.get(nd.metadata.name) || 0), (nd.status && nd.status.nodeInfo && nd.status.nodeInfo.kubeletVersion) || ""];
  }));

  const workloads = [];
  for (const d of sorted(state.deployments)) {
    const s = d.status || {};
    workloads.push(["Deployment", d.metadata.namespace, d.metadata.name, (s.readyReplicas || 0) + "/" + (d.spec.replicas ?? 1),
      n(s.updatedReplicas || 0), n(s.availableReplicas || 0)]);
  }
  for (const d of sorted(state.statefulsets)) {
    const s = d.status || {};
    workloads.push(["StatefulSet", d.metadata.namespace, d.metadata.name, (s.readyReplicas || 0) + "/" + (d.spec.replicas ?? 1),
      n(s.updatedReplicas || 0), n(s.availableReplicas || 0)]);
  }
  for (const d of sorted(state.daemonsets)) {
    const s = d.status || {};
    workloads.push(["DaemonSet", d.metadata.namespace, d.metadata.name, (s.numberReady || 0) + "/" + (s.desiredNumberScheduled || 0),
      n(s.updatedNumberScheduled || 0), n(s.numberAvailable || 0)]);
  }
  fill("workloads", workloads);

  fill("pods", sorted(state.pods).map((p) => {
    const st = podStatus(p);
    const restarts = ((p.status && p.status.containerStatuses) || []).reduce((a, c) => a + (c.restartCount || 0), 0);
    return [p.metadata.namespace, p.metadata.name,
      el("span", { class: st === "Running" || st === "Succeeded" ? "good" : "bad" }, st), n(restarts),
      (p.status && p.status.podIP) || "", p.spec.nodeName || "", age(p.metadata.creationTimestamp)];
  }));

  const slicesOf = new Map();
  for (const s of state.slices.values()) {
    const svc = s.metadata.labels && s.metadata.labels["kubernetes.io/service-name"];
    if (!svc) continue;
    const k = s.metadata.namespace + "/" + svc;
    if (!slicesOf.has(k)) slicesOf.set(k, []);
    slicesOf.get(k).push(s);
  }
  const trafficOf = new Map();
  for (const r of traffic.rows) {
    const k = r.namespace + "/" + r.service;
    if (!trafficOf.has(k)) trafficOf.set(k, []);
    trafficOf.get(k).push(r);
  }
  fill("services", sorted(state.services).map((s) => {
    const k = key(s);
    const fronts = [];
    for (const ip of s.spec.clusterIPs || (s.spec.clusterIP ? [s.spec.clusterIP] : [])) {
      for (const p of s.spec.ports || []) fronts.push(ip + ":" + p.port + "/" + (p.protocol || "TCP"));
    }
    for (const p of s.spec.ports || []) if (p.nodePort) fronts.push("*:" + p.nodePort + "/" + (p.protocol || "TCP"));
    const eps = [];
    for (const sl of slicesOf.get(k) || []) {
      for (const e of sl.endpoints || []) {
        const ready = !e.conditions || e.conditions.ready !== false;
        const who = e.targetRef ? e.targetRef.name : "";
        eps.push(el("li", {}, e.addresses.join(","), " ", who ? "(" + who + ")" : "", ready ? "" : " not ready"));
      }
    }
    const bes = (trafficOf.get(k) || []).map((r) => el("li", {}, r.frontend + " → " + r.backend + (r.backendPod ? " (" + r.backendPod + ")" : "") +
      ": " + r.connections + " · " + r.packets + " · " + r.bytes));
    return [s.metadata.namespace, s.metadata.name, s.spec.type || "ClusterIP", el("ul", { class: "plain" }, ...fronts.map((f) => el("li", {}, f))),
      el("ul", { class: "plain" }, ...eps), el("ul", { class: "plain" }, ...bes)];
  }));
  document.getElementById("traffic-note").textContent = traffic.note;

  const dns = [];
  for (const s of sorted(state.services)) {
    const name = s.metadata.name + "." + s.metadata.namespace + ".svc." + domain;
    if (s.spec.type === "ExternalName") dns.push([name, "CNAME", s.spec.externalName]);
    else if (s.spec.clusterIP === "None") {
      const addrs = [];
      for (const sl of slicesOf.get(key(s)) || []) for (const e of sl.endpoints || []) addrs.push(...e.addresses);
      dns.push([name, "A (headless)", addrs.join(", ")]);
    } else dns.push([name, "A", (s.spec.clusterIPs || [s.spec.clusterIP]).join(", ")]);
  }
  fill("dns", dns);

  const evs = [...state.events.values()].sort((a, b) => byKey(evTime(b), evTime(a))).slice(0, 50);
  fill("events", evs.map((e) => [age(evTime(e)), el("span", { class: e.type === "Warning" ? "bad" : "" }, e.type || ""), e.reason || "",
    e.involvedObject ? e.involvedObject.kind + " " + (e.involvedObject.namespace ? e.involvedObject.namespace + "/" : "") + e.involvedObject.name : "",
    e.message || ""]));

  barChart(document.getElementById("plot-pods"), [...podsOn.entries()].sort().map(([k, v]) => ({ label: k, value: v })), (v) => String(v));
  const perSvc = new Map();
  for (const r of traffic.rows) {
    const k = r.namespace + "/" + r.service;
    const t = perSvc.get(k) || { label: k, value: 0, rate: 0 };
    t.rate += traffic.rates.get(rowKey(r)) || 0;
    t.value += r.connections;
    perSvc.set(k, t);
  }
  barChart(document.getElementById("plot-traffic"), [...perSvc.values()].sort((a, b) => b.value - a.value).slice(0, 12),
    (v, d) => v + " · " + d.rate.toFixed(1) + "/s");
}

const evTime = (e) => e.lastTimestamp || e.eventTime || (e.metadata && e.metadata.creationTimestamp) || "";
const rowKey = (r) => r.node + "|" + r.frontend + "|" + r.backend;

// barChart draws horizontal bars as SVG elements (no markup from data).
function barChart(box, data, label) {
  const NS = "http://www.w3.org/2000/svg";
  const h = 20, w = 360, lw = 150;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", w + 120);
  svg.setAttribute("height", Math.max(1, data.length) * h + 4);
  const max = Math.max(1e-9, ...data.map((d) => d.value));
  data.forEach((d, i) => {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", 0); t.setAttribute("y", i * h + 14);
    t.textContent = d.label.length > 24 ? d.label.slice(0, 23) + "…" : d.label;
    const r = document.createElementNS(NS, "rect");
    r.setAttribute("x", lw); r.setAttribute("y", i * h + 3);
    r.setAttribute("width", Math.max(1, ((w - lw) * d.value) / max)); r.setAttribute("height", h - 6);
    r.setAttribute("class", "bar");
    const v = document.createElementNS(NS, "text");
    v.setAttribute("x", w + 4); v.setAttribute("y", i * h + 14);
    v.textContent = label(d.value, d);
    svg.append(t, r, v);
  });
  if (!data.length) {
    const t = document.createElementNS(NS, "text");
    t.setAttribute("x", 0); t.setAttribute("y", 14);
    t.textContent = "nothing yet";
    svg.append(t);
  }
  box.replaceChildren(svg);
}

const metricRe = /^petrel_service_(connections|packets|bytes)_total\{([^}]*)\} (\S+)$/;
const labelRe = /(\w+)="((?:[^"\\]|\\.)*)"/g;

// pollTraffic reads each node's BPF traffic counters through the API's
// nodes/proxy every 5 s and keeps connection rates between reads.
async function pollTraffic() {
  let prev = new Map(), prevAt = 0;
  for (;;) {
    const rows = new Map();
    const failed = [];
    for (const nd of state.nodes.values()) {
      try {
        const r = await fetch("/api/v1/nodes/" + encodeURIComponent(nd.metadata.name) + "/proxy/metrics");
        if (!r.ok) { failed.push(nd.metadata.name + ": " + r.status); continue; }
        for (const line of (await r.text()).split("\n")) {
          const m = metricRe.exec(line);
          if (!m) continue;
          const l = {};
          for (const p of m[2].matchAll(labelRe)) l[p[1]] = p[2];
          const k = nd.metadata.name + "|" + l.frontend + "|" + l.backend;
          const row = rows.get(k) || { node: nd.metadata.name, namespace: l.namespace, service: l.service, frontend: l.frontend,
            backend: l.backend, backendPod: l.backend_pod, connections: 0, packets: 0, bytes: 0 };
          row[m[1]] += Number(m[3]);
          rows.set(k, row);
        }
      } catch (e) {
        failed.push(nd.metadata.name + ": " + e);
      }
    }
    const now = Date.now();
    const rates = new Map();
    for (const r of rows.values()) {
      const p = prev.get(rowKey(r));
      rates.set(rowKey(r), p !== undefined && prevAt ? Math.max(0, r.connections - p) / ((now - prevAt) / 1000) : 0);
    }
    prev = new Map([...rows.values()].map((r) => [rowKey(r), r.connections]));
    prevAt = now;
    traffic = { rows: [...rows.values()], rates,
      note: failed.length ? "BPF traffic unavailable from " + failed.join("; ") + " (it is read through nodes/proxy)" : "" };
    schedule();
    await sleep(5000);
  }
}

for (const [name, path] of sources) listWatch(name, path);
pollTraffic();
setInterval(schedule, 10000); // ages
