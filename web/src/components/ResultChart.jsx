// A chart of a result: bars or a line of one column against another, or a histogram of a
// numeric column (weighted by a count column when the result is already aggregated).
import { useEffect, useRef, useState } from 'preact/hooks';
import {
  BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController,
  LineElement, PointElement, Tooltip,
} from 'chart.js';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LineController, LineElement, PointElement, Tooltip, Legend);

const numeric = (rows, i) => rows.length > 0 && rows.every((r) => r[i] === null || typeof r[i] === 'number');

/** Equal-width bins of `values` (weighted), `n` of them, labelled by their ranges. */
export function histogram(values, weights, n = 12) {
  const pts = values.map((v, i) => [v, weights ? weights[i] : 1]).filter(([v, w]) => v !== null && w !== null);
  if (!pts.length) return { labels: [], counts: [] };
  const lo = Math.min(...pts.map(([v]) => v));
  const hi = Math.max(...pts.map(([v]) => v));
  const width = hi > lo ? (hi - lo) / n : 1;
  const counts = new Array(hi > lo ? n : 1).fill(0);
  for (const [v, w] of pts) counts[Math.min(counts.length - 1, Math.floor((v - lo) / width))] += w;
  const fmt = (x) => Number(x.toPrecision(3));
  return { labels: counts.map((_, i) => `${fmt(lo + i * width)}–${fmt(lo + (i + 1) * width)}`), counts };
}

export function ResultChart({ result }) {
  const { columns, rows } = result;
  const numbers = columns.map((_, i) => i).filter((i) => numeric(rows, i));
  const [kind, setKind] = useState('bar');
  const [x, setX] = useState(numbers.length < columns.length ? columns.findIndex((_, i) => !numbers.includes(i)) : 0);
  const [y, setY] = useState(numbers.find((i) => i !== x) ?? numbers[0] ?? 0);
  const canvas = useRef(null);

  useEffect(() => {
    if (!canvas.current || !rows.length) return;
    let labels;
    let data;
    if (kind === 'histogram') {
      const h = histogram(rows.map((r) => r[x]), y !== x ? rows.map((r) => r[y]) : null);
      labels = h.labels;
      data = h.counts;
    } else {
      const sorted = [...rows].sort((a, b) => (a[x] < b[x] ? -1 : a[x] > b[x] ? 1 : 0));
      labels = sorted.map((r) => String(r[x]));
      data = sorted.map((r) => r[y]);
    }
    const chart = new Chart(canvas.current, {
      type: kind === 'line' ? 'line' : 'bar',
      data: {
        labels,
        datasets: [{ label: kind === 'histogram' ? (y !== x ? `${columns[y]} by ${columns[x]}` : `rows by ${columns[x]}`) : columns[y], data, backgroundColor: '#2f6f9f', borderColor: '#2f6f9f', spanGaps: false }],
      },
      options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { display: true } } },
    });
    return () => chart.destroy();
  }, [result, kind, x, y]);

  if (!rows.length || !numbers.length) return <p class="hint">Nothing numeric to chart.</p>;
  const pick = (value, set, only) => (
    <select value={value} onChange={(e) => set(Number(e.currentTarget.value))}>
      {columns.map((c, i) => ((!only || only.includes(i)) ? <option value={i}>{c}</option> : null))}
    </select>
  );
  return (
    <div class="chart" data-testid="chart">
      <div class="controls">
        <label class="inline">Chart
          <select value={kind} onChange={(e) => setKind(e.currentTarget.value)} data-testid="chart-kind">
            <option value="bar">bar</option>
            <option value="line">line</option>
            <option value="histogram">histogram</option>
          </select>
        </label>
        <label class="inline">{kind === 'histogram' ? 'of' : 'x'} {pick(x, setX, kind === 'histogram' ? numbers : null)}</label>
        <label class="inline">{kind === 'histogram' ? 'weighted by' : 'y'} {pick(y, setY, numbers)}</label>
      </div>
      <div class="canvas"><canvas ref={canvas} role="img" aria-label={`${kind} chart of the result`} /></div>
    </div>
  );
}
