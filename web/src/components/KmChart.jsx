// Kaplan–Meier curves as step functions, one per group, with their 95 % bands dashed.
import { useEffect, useRef } from 'preact/hooks';
import { Chart, Filler, LinearScale, LineController, LineElement, PointElement, Legend, Tooltip } from 'chart.js';

Chart.register(LinearScale, LineController, LineElement, PointElement, Filler, Legend, Tooltip);

const COLOURS = ['#2f6f9f', '#c2572b', '#4c8c4a', '#7d4f9e', '#9e8a2b'];

/** Points of a curve's steps: survival is S(start)=previous value until the bin's end. */
export function steps(curve, key = 'survival') {
  const pts = [{ x: curve.bins[0]?.start ?? 0, y: 1 }];
  for (const b of curve.bins) pts.push({ x: b.end, y: b[key] });
  return pts;
}

export function KmChart({ fit }) {
  const canvas = useRef(null);
  useEffect(() => {
    const datasets = fit.curves.flatMap((c, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const label = fit.group ? `${fit.group} = ${c.group} (n ${c.n})` : `all (n ${c.n})`;
      return [
        { label, data: steps(c), stepped: 'before', borderColor: colour, backgroundColor: colour, pointRadius: 0, borderWidth: 2 },
        { label: `${label} 95% band`, data: steps(c, 'lower'), stepped: 'before', borderColor: colour, borderDash: [4, 4], pointRadius: 0, borderWidth: 1 },
        { label: `${label} upper`, data: steps(c, 'upper'), stepped: 'before', borderColor: colour, borderDash: [4, 4], pointRadius: 0, borderWidth: 1 },
      ];
    });
    const chart = new Chart(canvas.current, {
      type: 'line',
      data: { datasets },
      options: {
        animation: false,
        maintainAspectRatio: false,
        scales: {
          x: { type: 'linear', title: { display: true, text: fit.time } },
          y: { min: 0, max: 1, title: { display: true, text: 'survival' } },
        },
        plugins: { legend: { labels: { filter: (item) => !item.text.endsWith('upper') } } },
      },
    });
    return () => chart.destroy();
  }, [fit]);
  return <div class="canvas" data-testid="km-chart"><canvas ref={canvas} role="img" aria-label="Kaplan–Meier curves" /></div>;
}
