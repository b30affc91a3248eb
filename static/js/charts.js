// Draws every <canvas data-chart="ID"> from the JSON spec in <script id="ID"> (marketplace.charts).
// Values are written on the chart (bars: each; lines: every point when few, else every n-th and the
// last), so nothing is shown only on hover.
(function () {
  function formatTick(spec, value) {
    if (spec.format === "percent") return Math.round(value * 100) + "%";
    if (spec.format === "money") return (value < 0 ? "-" : "") + spec.symbol + Math.abs(value).toLocaleString(undefined, {maximumFractionDigits: 2});
    return value.toLocaleString();
  }

  var valueLabels = {
    id: "valueLabels",
    afterDatasetsDraw: function (chart) {
      var spec = chart.options.plugins.valueLabels.spec;
      var ctx = chart.ctx;
      ctx.save();
      ctx.font = "11px system-ui, sans-serif";
      ctx.textAlign = "center";
      ctx.textBaseline = "bottom";
      chart.data.datasets.forEach(function (dataset, di) {
        var meta = chart.getDatasetMeta(di);
        if (meta.hidden) return;
        var count = meta.data.length;
        var step = spec.kind === "bar" ? Math.max(1, Math.ceil(count / 16)) : Math.max(1, Math.ceil(count / 8));
        meta.data.forEach(function (element, i) {
          var text = spec.datasets[di].text[i];
          if (dataset.data[i] === null || (i % step !== 0 && i !== count - 1)) return;
          if (spec.kind === "bar" && Number(dataset.data[i]) === 0) return;  // an empty day needs no "0"
          ctx.fillStyle = "#1d2433";
          var y = spec.stacked ? element.y + 12 : element.y - 3;
          ctx.fillText(text, element.x, y);
        });
      });
      ctx.restore();
    },
  };

  function draw(canvas) {
    var source = document.getElementById(canvas.dataset.chart);
    if (!source || !window.Chart) return;
    var spec = JSON.parse(source.textContent);
    new window.Chart(canvas, {
      type: spec.kind,
      data: {
        labels: spec.labels,
        datasets: spec.datasets.map(function (d) {
          return {
            label: d.label,
            data: d.data.map(function (v) { return v === null ? null : Number(v); }),
            backgroundColor: d.colour,
            borderColor: d.colour,
            borderWidth: spec.kind === "line" ? 2 : 0,
            pointRadius: spec.kind === "line" ? 2 : 0,
            spanGaps: false,
          };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        layout: {padding: {top: 18, right: 18}},
        scales: {
          x: {stacked: spec.stacked, title: {display: true, text: spec.x_title}, ticks: {autoSkip: true, maxRotation: 0}},
          y: {
            stacked: spec.stacked,
            beginAtZero: true,
            suggestedMax: spec.format === "percent" ? 1 : undefined,
            title: {display: true, text: spec.y_title},
            ticks: {callback: function (value) { return formatTick(spec, value); }},
          },
        },
        plugins: {
          legend: {display: spec.datasets.length > 1, position: "bottom"},
          tooltip: {callbacks: {label: function (item) { return item.dataset.label + ": " + spec.datasets[item.datasetIndex].text[item.dataIndex]; }}},
          valueLabels: {spec: spec},
        },
      },
      plugins: [valueLabels],
    });
  }

  function drawAll(root) {
    (root || document).querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      if (!canvas.dataset.drawn) { canvas.dataset.drawn = "1"; draw(canvas); }
    });
  }
  document.addEventListener("DOMContentLoaded", function () { drawAll(document); });
  document.addEventListener("htmx:afterSettle", function (event) { drawAll(event.target); });
})();
