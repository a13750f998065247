// A federated result: the merged rows, with cells the disclosure rules withheld marked as such
// (and why), not shown as blanks.
import { number } from '../format.js';

export function ResultTable({ result }) {
  const why = new Map((result.privacy?.suppressed ?? []).map((s) => [s.row, s.reason]));
  return (
    <div class="scroll">
      <table class="grid" data-testid="result">
        <thead>
          <tr>{result.columns.map((c, i) => <th class={result.rows.some((r) => typeof r[i] === 'number') ? 'num' : ''}>{c}</th>)}</tr>
        </thead>
        <tbody>
          {result.rows.map((row, i) => (
            <tr class={why.has(i) ? 'suppressed-row' : ''}>
              {row.map((v) =>
                v === null && why.has(i) ? (
                  <td class="suppressed" title={why.get(i)} data-testid="suppressed">suppressed</td>
                ) : (
                  <td class={typeof v === 'number' ? 'num' : ''}>{v === null ? <small>null</small> : number(v)}</td>
                ),
              )}
            </tr>
          ))}
        </tbody>
      </table>
      {result.rows.length === 0 && <p>No rows.</p>}
      {why.size > 0 && (
        <p class="hint">
          {why.size} row{why.size === 1 ? '' : 's'} withheld: {[...new Set(why.values())].join('; ')}.
        </p>
      )}
    </div>
  );
}

/** The result as CSV (withheld cells empty), downloaded in the browser. */
export function downloadCsv(result, name = 'medfed-result.csv') {
  const cell = (v) => {
    if (v === null || v === undefined) return '';
    const s = String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const text = [result.columns, ...result.rows].map((r) => r.map(cell).join(',')).join('\r\n');
  const url = URL.createObjectURL(new Blob([text + '\r\n'], { type: 'text/csv' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  URL.revokeObjectURL(url);
}
