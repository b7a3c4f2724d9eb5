// The ops page's live part: polls the staff API's ops endpoint and redraws the figures and the
// small SVG line charts. No library; the page works without this script (server-rendered tables).
(function () {
  "use strict";
  var script = document.getElementById("ops-script");
  var url = script.dataset.url;
  var pollMs = parseInt(script.dataset.pollMs, 10) || 2000;
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
  var W = 320, H = 140, LEFT = 46, RIGHT = 8, TOP = 10, BOTTOM = 20;

  function shown(value) { return value === null || value === undefined ? "n/a" : String(value); }

  function svgElement(name, attributes) {
    var element = document.createElementNS(SVG, name);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, attributes[key]); });
    return element;
  }

  function drawChart(chart) {
    var svg = document.querySelector('svg[data-chart="' + chart.id + '"]');
    var legend = document.querySelector('[data-legend="' + chart.id + '"]');
    if (!svg) { return; }
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    legend.textContent = "";
    var points = [];
    chart.series.forEach(function (s) { points = points.concat(s.points); });
    if (points.length === 0) {
      svg.appendChild(svgElement("text", { x: 10, y: 70, fill: "#888" })).textContent = "no data yet";
      return;
    }
    var times = points.map(function (p) { return p[0]; });
    var t0 = Math.min.apply(null, times), t1 = Math.max.apply(null, times);
    var top = Math.max.apply(null, points.map(function (p) { return p[1]; }));
    if (!(top > 0)) { top = chart.unit === "" ? 0.01 : 1; }
    var x = function (t) { return LEFT + (t1 > t0 ? (t - t0) / (t1 - t0) : 1) * (W - LEFT - RIGHT); };
    var y = function (v) { return TOP + (1 - v / top) * (H - TOP - BOTTOM); };
    svg.appendChild(svgElement("line", { x1: LEFT, y1: TOP, x2: LEFT, y2: H - BOTTOM, stroke: "#999" }));
    svg.appendChild(svgElement("line", { x1: LEFT, y1: H - BOTTOM, x2: W - RIGHT, y2: H - BOTTOM, stroke: "#999" }));
    svg.appendChild(svgElement("text", { x: 2, y: TOP + 8, "font-size": 10 })).textContent = +top.toPrecision(3);
    svg.appendChild(svgElement("text", { x: 2, y: H - BOTTOM, "font-size": 10 })).textContent = "0";
    svg.appendChild(svgElement("text", { x: LEFT, y: H - 4, "font-size": 10 })).textContent =
      "last " + Math.round(t1 - t0) + " s";
    chart.series.forEach(function (s, index) {
      var colour = COLOURS[index % COLOURS.length];
      var coordinates = s.points.map(function (p) { return x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1); });
      var line = svgElement("polyline", {
        points: coordinates.join(" "), fill: "none", stroke: colour, "stroke-width": 1.5,
        "data-series": s.name, "data-points": s.points.length
      });
      svg.appendChild(line);
      if (s.points.length === 1) {
        svg.appendChild(svgElement("circle", { cx: x(s.points[0][0]), cy: y(s.points[0][1]), r: 2, fill: colour }));
      }
      var key = document.createElement("span");
      key.style.color = colour;
      key.textContent = "— " + s.name + " " + shown(s.points[s.points.length - 1][1]);
      legend.appendChild(key);
    });
  }

  function setField(row, field, value) {
    var cell = row && row.querySelector('[data-field="' + field + '"]');
    if (cell) { cell.firstChild ? (cell.firstChild.nodeValue = shown(value)) : (cell.textContent = shown(value)); }
  }

  function update(overview) {
    document.getElementById("generated-at").textContent = overview.generated_at;
    document.getElementById("window-seconds").textContent = shown(overview.window_seconds);
    overview.slices.forEach(function (s) {
      var row = document.querySelector('#slices tr[data-slice="' + s.name + '"]');
      setField(row, "phase", s.phase);
      setField(row, "weight", s.weight);
      setField(row, "diff-rate", s.shadow.diff_rate);
      s.gate.rows.forEach(function (r) {
        var gateRow = row && row.querySelector('tr[data-gate-figure="' + r.figure + '"]');
        if (gateRow) {
          gateRow.children[1].textContent = shown(r.value);
          gateRow.children[1].className = r.ok === null ? "na" : (r.ok ? "ok" : "bad");
          gateRow.children[2].textContent = r.bound;
        }
      });
      s.traffic.forEach(function (t) {
        var trafficRow = document.querySelector(
          '#traffic tr[data-slice="' + s.name + '"][data-backend="' + t.backend + '"]');
        setField(trafficRow, "requests", t.total.requests);
        setField(trafficRow, "errors", t.total.errors);
        setField(trafficRow, "error_rate", t.total.error_rate);
        setField(trafficRow, "p99_ms", t.total.p99_ms);
        setField(trafficRow, "window_error_rate", t.window && t.window.error_rate);
        setField(trafficRow, "window_p99_ms", t.window && t.window.p99_ms);
      });
    });
    overview.charts.forEach(drawChart);
    document.body.dataset.polls = String((parseInt(document.body.dataset.polls || "0", 10)) + 1);
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("ops endpoint answered " + response.status); }
        return response.json();
      })
      .then(update)
      .catch(function (error) { document.body.dataset.pollError = String(error); })
      .finally(function () { window.setTimeout(poll, pollMs); });
  }

  JSON.parse(document.getElementById("ops-charts").textContent).forEach(drawChart);
  window.setTimeout(poll, pollMs);
})();
