// serve's page: live figures from /metrics, and the "try it" forms. Plain JS, no
// dependencies; loaded as a file (the page's CSP forbids inline scripts).
"use strict";

(function () {
  const session = document.getElementById("session");
  const csrf = session ? session.dataset.csrf : null;
  const headers = (extra) => Object.assign(csrf ? { "x-runner-csrf": csrf } : {}, extra || {});

  // While the models load, wait for /readyz and reload.
  if (document.querySelector("[data-loading]")) {
    const wait = () =>
      fetch("/readyz", { headers: headers() })
        .then((r) => (r.ok ? location.reload() : setTimeout(wait, 1000)))
        .catch(() => setTimeout(wait, 2000));
    setTimeout(wait, 1000);
    return;
  }

  // One OpenMetrics line: name, labels, value.
  function parseLine(line) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) return null;
    const labels = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
    let l;
    while ((l = re.exec(m[3] || "")) !== null) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    return { name: m[1], labels: labels, value: parseFloat(m[4]) };
  }

  // The q-quantile of cumulative buckets [[le, count]], interpolated inside the bucket
  // as Prometheus' histogram_quantile does.
  function quantile(q, buckets) {
    buckets.sort((a, b) => a[0] - b[0]);
    const total = buckets.length ? buckets[buckets.length - 1][1] : 0;
    if (!total) return null;
    const rank = q * total;
    let prevLe = 0, prevCount = 0;
    for (const [le, count] of buckets) {
      if (count >= rank) {
        if (!isFinite(le)) return prevLe;
        const inBucket = count - prevCount;
        return prevLe + (le - prevLe) * (inBucket ? (rank - prevCount) / inBucket : 0);
      }
      prevLe = le; prevCount = count;
    }
    return prevLe;
  }

  function seconds(s) {
    if (s === null) return "-";
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + " ms";
    return s.toFixed(2) + " s";
  }

  // Where each pipeline runs and its averages, from /models (the engine moves a
  // pipeline between inline and the pool as it measures it).
  function micros(us) {
    return us >= 1000 ? (us / 1000).toFixed(1) + " ms" : us.toFixed(0) + " µs";
  }
  function placements() {
    fetch("/models", { headers: headers() })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((body) => {
        for (const model of body.models || []) {
          const card = document.querySelector('section.model[data-model="' + CSS.escape(model.name) + '"]');
          const runs = card && card.querySelector("[data-runs]");
          const e = model.execution;
          if (!runs || !e) continue;
          const mode = document.createElement("code");
          mode.textContent = e.mode;
          const rest = e.measured_calls
            ? " · on average " + micros(e.cpu_us) + " of CPU and " + micros(e.waiting_us) +
              " waiting, over " + e.measured_calls + " measured calls"
            : " · not measured yet";
          runs.replaceChildren(mode, document.createTextNode(rest));
        }
      })
      .catch(() => {});
  }

  const last = {};
  function refresh() {
    placements();
    fetch("/metrics", { headers: headers() })
      .then((r) => (r.ok ? r.text() : Promise.reject(r.status)))
      .then((text) => {
        const stats = {};
        const of = (model) => (stats[model] = stats[model] || { requests: 0, errors: 0, in_flight: 0, buckets: {} });
        for (const line of text.split("\n")) {
          if (!line || line[0] === "#") continue;
          const p = parseLine(line);
          if (!p || p.labels.model === undefined) continue;
          const s = of(p.labels.model);
          if (p.name === "runner_requests_total") {
            s.requests += p.value;
            if (!(p.labels.status >= 200 && p.labels.status < 300)) s.errors += p.value;
          } else if (p.name === "runner_in_flight_requests") {
            s.in_flight += p.value;
          } else if (p.name === "runner_request_duration_seconds_bucket") {
            const le = p.labels.le === "+Inf" ? Infinity : parseFloat(p.labels.le);
            s.buckets[le] = (s.buckets[le] || 0) + p.value;
          }
        }
        const now = performance.now();
        for (const card of document.querySelectorAll("section.model")) {
          const name = card.dataset.model;
          const s = stats[name] || { requests: 0, errors: 0, in_flight: 0, buckets: {} };
          const buckets = Object.entries(s.buckets).map(([le, c]) => [parseFloat(le), c]);
          const before = last[name];
          const rate = before ? ((s.requests - before.requests) * 1000) / (now - before.at) : null;
          last[name] = { requests: s.requests, at: now };
          const show = {
            rate: rate === null ? "-" : rate.toFixed(rate < 10 ? 1 : 0),
            requests: String(s.requests),
            errors: String(s.errors),
            in_flight: String(s.in_flight),
            p50: seconds(quantile(0.5, buckets)),
            p99: seconds(quantile(0.99, buckets)),
          };
          for (const [stat, value] of Object.entries(show)) {
            const el = card.querySelector('[data-stat="' + stat + '"]');
            if (el) el.textContent = value;
          }
        }
      })
      .catch(() => {})
      .finally(() => setTimeout(refresh, 2000));
  }
  refresh();

  // The "try it" forms: send, then show the status, the latency and the answer.
  for (const form of document.querySelectorAll("form.try")) {
    const out = form.nextElementSibling;
    const field = (name) => out.querySelector('[data-out="' + name + '"]');
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      let body, type;
      if (form.dataset.kind === "file") {
        const file = form.querySelector("input[type=file]").files[0];
        if (!file) return;
        body = file;
        type = form.dataset.type || file.type || "application/octet-stream";
      } else {
        body = form.querySelector("textarea").value;
        type = "application/json";
      }
      const button = form.querySelector("button");
      button.disabled = true;
      const started = performance.now();
      fetch(form.dataset.url, { method: "POST", body: body, headers: headers({ "content-type": type }) })
        .then((r) =>
          r.text().then((text) => {
            const ms = performance.now() - started;
            out.classList.remove("hidden");
            field("status").textContent = "HTTP " + r.status + " " + r.statusText;
            field("status").className = r.ok ? "added" : "error";
            field("latency").textContent = ms.toFixed(1) + " ms";
            const model = r.headers.get("x-runner-model");
            field("model").textContent = model ? "answered by " + model : "";
            let shown = text;
            try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* not JSON: as sent */ }
            field("body").textContent = shown;
          })
        )
        .catch((e) => {
          out.classList.remove("hidden");
          field("status").textContent = "request failed: " + e;
          field("status").className = "error";
        })
        .finally(() => { button.disabled = false; });
    });
  }
})();
