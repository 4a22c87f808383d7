// The console's pages: charts on the device page, live updates from the server's event stream
// (each page swaps in fresh fragments of itself, never reloading), and the command buttons.
"use strict";
(function () {
  const body = document.body;
  const device = body.dataset.device;
  const charts = [];
  const COLOURS = { taken: "#1a7f37", missed: "#cf222e", extra: "#bf8700", reorder: "#8250df",
    empty: "#cf222e", cartridge_replaced: "#0969da", refill_needed: "#bf8700",
    refilled: "#0969da", maintenance_due: "#cf222e" };

  function toast(text, bad) {
    const t = document.getElementById("toast");
    t.textContent = text;
    t.className = bad ? "shown bad" : "shown";
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.className = ""; }, 6000);
  }

  // The page says every time in UTC; Chart.js's date adapter (date-fns) works in the
  // browser's zone. An adapter that works in UTC takes its place, and times are drawn as they
  // are: moved by the browser's offset to read as UTC, the hour a daylight saving change skips
  // drew two hours of readings at one place, once a year.
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
    "Dec"];
  const UNIT_MS = { millisecond: 1, second: 1000, minute: 60000, hour: 3600000,
    day: 86400000, week: 604800000 };
  const MONTHS_IN = { month: 1, quarter: 3, year: 12 };
  const two = n => String(n).padStart(2, "0");
  function formatUtc(t, f) {
    const d = new Date(t);
    const parts = { yyyy: d.getUTCFullYear(), MMM: MONTHS[d.getUTCMonth()],
      MM: two(d.getUTCMonth() + 1), dd: two(d.getUTCDate()), d: d.getUTCDate(),
      HH: two(d.getUTCHours()), mm: two(d.getUTCMinutes()), ss: two(d.getUTCSeconds()),
      SSS: String(d.getUTCMilliseconds()).padStart(3, "0") };
    return f.replace(/'([^']*)'|yyyy|MMM|MM|dd|d|HH|mm|ss|SSS/g,
      (m, quoted) => quoted !== undefined ? quoted : String(parts[m]));
  }
  function startOfUtc(t, unit, weekday) {
    if (unit === "week" || unit === "isoWeek") {
      const day = startOfUtc(t, "day");
      const first = unit === "isoWeek" ? Number(weekday) : 0;
      return day - ((new Date(day).getUTCDay() - first + 7) % 7) * UNIT_MS.day;
    }
    if (unit in MONTHS_IN) {
      const d = new Date(t);
      const m = unit === "year" ? 0 : d.getUTCMonth() - d.getUTCMonth() % MONTHS_IN[unit];
      return Date.UTC(d.getUTCFullYear(), m, 1);
    }
    const ms = UNIT_MS[unit] || 1;
    return t - (((t % ms) + ms) % ms);
  }
  function addUtc(t, amount, unit) {
    if (unit in MONTHS_IN) {
      const d = new Date(t);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + amount * MONTHS_IN[unit],
        d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(),
        d.getUTCMilliseconds());
    }
    return t + amount * (UNIT_MS[unit === "isoWeek" ? "week" : unit] || 1);
  }
  if (window.Chart) {
    Chart._adapters._date.override({
      formats: () => ({ datetime: "yyyy-MM-dd HH:mm:ss", millisecond: "HH:mm:ss.SSS",
        second: "HH:mm:ss", minute: "HH:mm", hour: "MMM d HH:mm", day: "MMM d", week: "MMM d",
        month: "MMM yyyy", quarter: "MMM yyyy", year: "yyyy" }),
      parse: value => value === null || value === undefined ? null
        : value instanceof Date ? value.getTime()
        : typeof value === "number" ? value : Date.parse(value),
      format: formatUtc,
      add: addUtc,
      diff: (max, min, unit) => {
        if (unit in MONTHS_IN) {
          const a = new Date(max), b = new Date(min);
          return Math.trunc(((a.getUTCFullYear() - b.getUTCFullYear()) * 12
            + a.getUTCMonth() - b.getUTCMonth()) / MONTHS_IN[unit]);
        }
        return Math.trunc((max - min) / (UNIT_MS[unit === "isoWeek" ? "week" : unit] || 1));
      },
      startOf: startOfUtc,
      endOf: (t, unit) => addUtc(startOfUtc(t, unit, 1), 1, unit) - 1,
    });
  }

  function datasets(c) {
    const sets = [{ label: c.channel + (c.unit ? " (" + c.unit + ")" : ""),
      data: c.points.map(p => ({ x: p[0], y: p[1] })), borderColor: "#0969da",
      backgroundColor: "#0969da", borderWidth: 1.5, pointRadius: c.kind === "cycles" ? 2 : 0,
      // a reading holds until the next (the deadband sends only changes): steps, not slopes
      showLine: c.kind !== "cycles", stepped: c.kind !== "cycles" }];
    for (const line of c.lines) {
      sets.push({ label: line.label, data: line.points.map(p => ({ x: p[0], y: p[1] })),
        borderColor: line.label.startsWith("forecast") ? "#8250df" : "#57606a",
        borderDash: [6, 4], borderWidth: 1.5, pointRadius: 0, fill: false });
    }
    const kinds = {};
    for (const m of c.marks) (kinds[m.label] = kinds[m.label] || []).push(m);
    for (const label in kinds) {
      const colour = COLOURS[kinds[label][0].kind] || "#57606a";
      sets.push({ label: label, type: "scatter",
        data: kinds[label].map(m => ({ x: m.t, y: m.y })),
        borderColor: colour, backgroundColor: colour, pointRadius: 5, pointStyle: "triangle" });
    }
    return sets;
  }

  // One time axis for every chart of the page: the span, to the device's newest reading (a
  // chart of a few points spanned only those, an ink chart to its forecast's end weeks ahead),
  // and past it as far as an ink forecast goes, for up to half the span more (its label says
  // when it reaches empty).
  function xRange(data) {
    let min = data.start;
    if (min === null) {     // span=all: from the first point any chart has
      const firsts = data.charts.filter(x => x.points.length).map(x => x.points[0][0]);
      min = firsts.length ? Math.min(...firsts) : null;
    }
    let max = data.end;
    for (const c of data.charts) {
      for (const line of c.lines) {
        const last = line.points.length ? line.points[line.points.length - 1][0] : null;
        if (line.label.startsWith("forecast") && last !== null && max !== null && min !== null
            && last > max) {
          max = Math.min(last, data.end + (data.end - min) / 2);
        }
      }
    }
    return { min: min === null ? undefined : min, max: max === null ? undefined : max };
  }

  // Charts are matched by channel: a channel that appears later (a device's first readings
  // of it) rebuilds the section rather than shifting data under another caption.
  function drawCharts(data) {
    const section = document.getElementById("charts");
    const names = data.charts.map(c => c.channel).join("\n");
    if (section.dataset.channels !== undefined && section.dataset.channels !== names) {
      charts.splice(0).forEach(chart => chart.destroy());
      section.replaceChildren(...data.charts.map((c, i) => {
        const figure = document.createElement("figure");
        figure.className = "chart";
        const caption = document.createElement("figcaption");
        caption.textContent = c.channel + (c.unit ? " (" + c.unit + ")" : "");
        const holder = document.createElement("div");
        holder.className = "canvas";
        const canvas = document.createElement("canvas");
        canvas.dataset.chart = String(i);
        holder.append(canvas);
        figure.append(caption, holder);
        return figure;
      }));
    }
    section.dataset.channels = names;
    const range = xRange(data);
    section.querySelectorAll("canvas[data-chart]").forEach((canvas, i) => {
      const c = data.charts[i];
      if (charts[i]) {
        charts[i].data.datasets = datasets(c);
        Object.assign(charts[i].options.scales.x, range);
        charts[i].update("none");
        return;
      }
      charts[i] = new Chart(canvas, {
        type: "line", data: { datasets: datasets(c) },
        options: { animation: false, parsing: false, normalized: true, maintainAspectRatio: false,
          interaction: { mode: "nearest", intersect: false },
          scales: { x: Object.assign({ type: "time",
            // a date on the hours' ticks too: a week of them said "12AM 7AM 2PM" and no day
            time: { tooltipFormat: "yyyy-MM-dd HH:mm 'UTC'",
              displayFormats: { minute: "HH:mm", hour: "MMM d HH:mm", day: "MMM d" } },
            ticks: { maxTicksLimit: 8, maxRotation: 0 },
            title: { display: true, text: "UTC" } }, range),
            // a level in % reads against its whole range, not its noise; a count has whole
            // ticks (it showed "70.5" pills)
            y: c.unit === "%" ? { suggestedMin: 0, suggestedMax: 100 }
              : c.unit === "count" ? { ticks: { precision: 0 } } : {} },
          plugins: { legend: { labels: { boxWidth: 12 } } } } });
    });
  }

  // Acknowledgements under way or done keep their look when a live update swaps the rows.
  const answered = new Map();
  function keyOf(row) { return [row.dataset.device, row.dataset.kind, row.dataset.sensor].join("\n"); }
  function markAnswered() {
    document.querySelectorAll("#actions-table tbody tr").forEach(row => {
      const state = answered.get(keyOf(row));
      if (!state) return;
      // a disabled button drops the keyboard's focus to the page's top: the row keeps it
      // (parked there: the list still takes updates, or it stayed paused after every click)
      if (row.contains(document.activeElement) && document.activeElement.tagName === "BUTTON") {
        row.tabIndex = -1;
        row.dataset.parked = "1";
        row.focus();
      }
      row.querySelectorAll("button").forEach(b => { b.disabled = true; });
      if (state !== "pending") { row.classList.add("done"); row.dataset.answered = state; }
    });
  }

  // The live mark says, in words as well as colour, whether what the page shows is current.
  const LIVE = { live: "new data shows up here as it arrives",
    paused: "updates wait while the pointer or the keyboard is on the list: move away to see them",
    stale: "the console cannot read its database: what the page shows may be old",
    reconnecting: "the connection to the console is lost: reconnecting" };
  function setLive(state, why) {
    const live = document.getElementById("live");
    live.textContent = state;
    live.className = "live " + (state === "live" ? "on" : state === "paused" ? "paused" : "off");
    live.title = why || LIVE[state];
  }

  // A list is not swapped under the pointer or the keyboard: a click would land on the row
  // that moved there (another device), and focus would fall back to the page's top. It is
  // marked waiting, and brought up to date once both have left it.
  function inUse(el) {
    const focused = document.activeElement;
    return el.matches(":hover") ||
      (focused && focused !== body && el.contains(focused) && !focused.dataset.parked);
  }
  function whenFree(el) {
    if (el.dataset.waiting) return;
    el.dataset.waiting = "1";
    const retry = () => setTimeout(() => {
      if (inUse(el)) return;
      delete el.dataset.waiting;
      el.removeEventListener("mouseleave", retry);
      el.removeEventListener("focusout", retry);
      update();
    }, 0);
    el.addEventListener("mouseleave", retry);
    el.addEventListener("focusout", retry);
  }

  // Every refresh goes through update(): one at a time, and one more if asked meanwhile, so
  // two never swap lists out of order nor write the mark over each other.
  let running = false, pending = false, streamError = null, retryTimer = null, forceNext = false;
  function update() {
    if (running) { pending = true; return; }
    running = true;
    (async () => {
      try {
        do { pending = false; await refresh(); } while (pending);
      } finally {
        running = false;
      }
    })();
  }

  async function refresh() {
    const jobs = [];
    let failed = null;
    const force = forceNext;
    forceNext = false;
    document.querySelectorAll("[data-fragment]").forEach(el => {
      if (!force && inUse(el)) { whenFree(el); return; }
      jobs.push(fetch(el.dataset.fragment, { credentials: "same-origin" }).then(r => {
        if (!r.ok) {
          failed = "the console answered " + r.status + ": what the page shows may be old";
          return null;
        }
        return r.text().then(html => {
          if (!force && inUse(el)) { whenFree(el); return; }   // the pointer came meanwhile
          const parked = el.contains(document.activeElement) && document.activeElement.dataset.parked;
          el.innerHTML = html;
          if (parked) {   // the keyboard stays on the list, not sent back to the page's top
            el.tabIndex = -1;
            el.dataset.parked = "1";
            el.focus();
          }
        });
      }, () => { failed = "the console does not answer: what the page shows may be old"; }));
    });
    if (device) {
      jobs.push(fetch("/device/" + encodeURIComponent(device) + "/data?span=" + body.dataset.span,
        { credentials: "same-origin" }).then(r => r.ok ? r.json().then(drawCharts) : null));
    }
    await Promise.all(jobs);
    markAnswered();
    clearTimeout(retryTimer);
    if (streamError) {
      setLive("stale", streamError);
    } else if (failed) {
      setLive("stale", failed);
      retryTimer = setTimeout(update, 3000);    // a quiet fleet sends no word to try again on
    } else {
      setLive(document.querySelector("[data-fragment][data-waiting]") ? "paused" : "live");
    }
    const live = document.getElementById("live");
    live.classList.add("beat");
    setTimeout(() => live.classList.remove("beat"), 600);
    body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
  }

  function listen() {
    const url = "/api/stream" + (device ? "?device=" + encodeURIComponent(device) : "");
    const source = new EventSource(url);
    source.onopen = () => setLive("live");
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {    // refused (a new token): no retry
        setLive("stale", "the console refused the stream (restarted with a new token?): " +
          "reload the page");
      } else {
        setLive("reconnecting");
      }
    };
    source.onmessage = ev => {
      const news = JSON.parse(ev.data);
      if (news.error) {
        streamError = "the console cannot read its database (" + news.error + "): what the " +
          "page shows may be old";
        setLive("stale", streamError);
        return;
      }
      streamError = null;
      if (news.clock) document.getElementById("clock").textContent = news.clock;
      update();
    };
  }

  async function post(doc) {
    const r = await fetch("/api/command", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(doc) });
    let out;
    try { out = await r.json(); } catch (e) { out = { ok: false, error: "HTTP " + r.status }; }
    return out;
  }

  // the settings box shows a change the chosen sensor's kind of insight takes
  const settingsOf = document.getElementById("settings-sensor");
  if (settingsOf) settingsOf.addEventListener("change", () => {
    document.getElementById("settings-change").placeholder =
      settingsOf.selectedOptions[0].dataset.example;
  });

  document.addEventListener("click", async ev => {
    const answer = ev.target.closest("button[data-answer]");
    if (answer) {
      const row = answer.closest("tr");
      const doc = { command: answer.dataset.answer, device: row.dataset.device,
        kind: row.dataset.kind, sensor: row.dataset.sensor, seen: Number(row.dataset.seen) };
      if (answer.dataset.forMs) doc.for_ms = Number(answer.dataset.forMs);
      const key = keyOf(row);
      answered.set(key, "pending");
      markAnswered();
      // an insight's answer goes to the device, which may be slow or offline: said, not silent
      if (!row.dataset.local) {
        toast("waiting for " + doc.device + "'s reply (up to 10 s; an offline device cannot " +
          "take it) ...");
      }
      const out = await post(doc);
      if (out.ok) {
        answered.set(key, doc.command);
        markAnswered();
        toast((doc.command === "ack" ? "Acknowledged: " : "Snoozed: ") + doc.device +
          (out.reply ? " said " + JSON.stringify(out.reply.result) : ""));
      } else {
        answered.delete(key);
        document.querySelectorAll("#actions-table tbody tr").forEach(r => {
          if (keyOf(r) === key) r.querySelectorAll("button").forEach(b => { b.disabled = false; });
        });
        toast(out.error, true);
        if (out.changed) {      // the row as it now stands, to be read again: drawn under the
          forceNext = true;     // pointer too, which is on the button just clicked
          update();
        }
      }
      return;
    }
    const command = ev.target.closest("button[data-command]");
    if (command) {
      const doc = { command: command.dataset.command, device: device };
      const reply = document.getElementById("reply");
      if (doc.command === "set_interval") {
        doc.sensor = document.getElementById("interval-sensor").value;
        const text = document.getElementById("interval-s").value.trim();
        const seconds = Number(text);
        // said in the box's own unit, seconds (an empty box went out as 0 ms, and the device's
        // answer spoke of interval_ms from 100 to 86400000)
        if (!doc.sensor || text === "" || !(seconds >= 0.1 && seconds <= 86400)) {
          reply.className = "reply bad";
          reply.textContent = !doc.sensor ? "no sensor to set: this device sent no readings yet"
            : "the interval is a number of seconds from 0.1 to 86400 (1 day)";
          return;
        }
        doc.interval_ms = Math.round(seconds * 1000);
      }
      if (doc.command === "settings") {
        // an insight's settings (docs/insights/): read, or changed with a JSON map
        doc.sensor = document.getElementById("settings-sensor").value;
        if (command.dataset.change) {
          let settings = null;
          try {
            settings = JSON.parse(document.getElementById("settings-change").value);
          } catch (e) { settings = null; }
          if (settings === null || typeof settings !== "object" || Array.isArray(settings)) {
            reply.className = "reply bad";
            const example = settingsOf.selectedOptions[0].dataset.example;
            reply.textContent = "the settings to change are not a JSON map: write them " +
              (example ? "as " + example + " " : "") + "(docs/insights/)";
            return;
          }
          doc.settings = settings;
        }
      }
      reply.textContent = "waiting for " + device + " ...";
      command.disabled = true;
      const out = await post(doc);
      command.disabled = false;
      reply.className = out.ok ? "reply ok" : "reply bad";
      reply.textContent = out.ok ? JSON.stringify(out.reply, null, 2) : out.error;
    }
  });

  const data = document.getElementById("chart-data");
  if (data) drawCharts(JSON.parse(data.textContent));
  if (body.dataset.live) listen();
  requestAnimationFrame(() => { body.dataset.ready = "1"; });
})();
