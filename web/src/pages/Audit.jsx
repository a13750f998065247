// The auditor's view: the hub's hash-chained audit trail, filterable, with the chain's
// verification (re-walked by the hub on request).
import { useEffect, useMemo, useState } from 'preact/hooks';
import { Notice } from '../components/Notice.jsx';
import { epsilon } from '../format.js';

const PAGE = 500;

function Verification({ report, onVerify, busy }) {
  if (!report) return null;
  const ok = report.intact;
  return (
    <div class={`notice ${ok ? 'ok' : 'error'}`} data-testid="chain">
      <strong>{ok ? 'Chain intact' : 'Chain broken'}</strong>: {report.entries} entries re-hashed,{' '}
      {report.checkpoints} signed checkpoint{report.checkpoints === 1 ? '' : 's'} checked
      {report.first_break ? `; first break at entry ${JSON.stringify(report.first_break)}` : ''}.{' '}
      <button class="link" onClick={onVerify} disabled={busy}>{busy ? 'Verifying…' : 'Verify again'}</button>
    </div>
  );
}

export function Audit({ api }) {
  const [records, setRecords] = useState([]);
  const [more, setMore] = useState(true);
  const [report, setReport] = useState(null);
  const [verifying, setVerifying] = useState(false);
  const [error, setError] = useState(null);
  const [filter, setFilter] = useState({ text: '', decision: '' });

  async function loadFrom(after) {
    try {
      const page = await api.audit(after, PAGE);
      setRecords((r) => [...r, ...page.records]);
      setMore(page.records.length === PAGE);
    } catch (e) {
      setError(e.message);
    }
  }
  async function verify() {
    setVerifying(true);
    try {
      setReport(await api.verifyAudit());
    } catch (e) {
      setError(e.message);
    }
    setVerifying(false);
  }
  useEffect(() => {
    loadFrom(0);
    verify();
  }, [api]);

  const shown = useMemo(() => {
    const t = filter.text.trim().toLowerCase();
    return records
      .filter((r) => !filter.decision || r.decision === filter.decision)
      .filter((r) => !t || [r.actor, r.role, r.action, r.study, r.reason, ...(r.sites ?? [])].some((v) => v && String(v).toLowerCase().includes(t)))
      .reverse();
  }, [records, filter]);

  return (
    <>
      <h1>Audit trail</h1>
      {error && <Notice kind="error">{error}</Notice>}
      <Verification report={report} onVerify={verify} busy={verifying} />
      <div class="toolbar">
        <label class="inline">Filter
          <input type="search" placeholder="who, action, study, site, reason" value={filter.text} onInput={(e) => setFilter({ ...filter, text: e.currentTarget.value })} data-testid="audit-filter" />
        </label>
        <label class="inline">Decision
          <select value={filter.decision} onChange={(e) => setFilter({ ...filter, decision: e.currentTarget.value })}>
            <option value="">any</option>
            <option value="allow">allowed</option>
            <option value="deny">denied</option>
            <option value="error">failed</option>
          </select>
        </label>
        <small>{shown.length} of {records.length} entries, newest first</small>
      </div>
      <div class="scroll">
        <table class="grid compact" data-testid="trail">
          <thead><tr><th>#</th><th>When (UTC)</th><th>Who</th><th>Action</th><th>Study</th><th>Sites</th><th>Decision</th><th>Reason</th><th>ε</th></tr></thead>
          <tbody>
            {shown.map((r) => (
              <tr class={r.decision}>
                <td class="num">{r.seq}</td>
                <td><time>{new Date(r.at_us / 1000).toISOString().replace('T', ' ').slice(0, 19)}</time></td>
                <td>{r.actor} <small>{r.role}</small></td>
                <td><code>{r.action}</code></td>
                <td>{r.study ?? ''}</td>
                <td>{(r.sites ?? []).join(', ')}</td>
                <td class={`status ${r.decision}`}>{r.decision}</td>
                <td class="reason">{r.reason}</td>
                <td>{r.epsilon ? epsilon(r.epsilon) : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {more && <button class="secondary" onClick={() => loadFrom(records.at(-1)?.seq ?? 0)}>Load more</button>}
    </>
  );
}
