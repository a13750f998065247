// The query workspace: SQL over the study's OMOP tables, run at every approved site, the merged
// and protected answer shown as a table and a chart, with each site's status and the privacy
// cost.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { Notice } from '../components/Notice.jsx';
import { Working } from '../components/Working.jsx';
import { SqlEditor } from '../components/SqlEditor.jsx';
import { SchemaPanel } from '../components/SchemaPanel.jsx';
import { ResultTable, downloadCsv } from '../components/ResultTable.jsx';
import { ResultChart } from '../components/ResultChart.jsx';
import { ProtectionLine, SiteStatus } from '../components/SiteStatus.jsx';
import { Budget } from '../components/Budget.jsx';
import { Evidence } from '../components/Evidence.jsx';
import { StudyPicker, approvedSites, useStudies } from '../components/StudyPicker.jsx';

const EXAMPLE = 'SELECT gender_concept_id, COUNT(*) AS people\nFROM person\nGROUP BY gender_concept_id';

export function Workspace({ api }) {
  const [studies, studiesError] = useStudies(api);
  const [catalog, setCatalog] = useState(null);
  const [studyId, setStudyId] = useState('');
  const editor = useRef(null);
  const [dp, setDp] = useState({ epsilon: '0.1', bounds: '' });
  const [running, setRunning] = useState(false);
  const [result, setResult] = useState(null);
  const [held, setHeld] = useState(null);
  const [error, setError] = useState(null);
  const [runs, setRuns] = useState(0);

  useEffect(() => {
    api.catalog().then((c) => setCatalog(c.tables)).catch((e) => setError(e.message));
  }, [api]);
  useEffect(() => {
    if (studies?.length && !studyId) setStudyId(studies[0].id);
  }, [studies]);

  const study = studies?.find((s) => s.id === studyId);
  const tables = useMemo(() => {
    if (!catalog || !study) return {};
    return Object.fromEntries(Object.entries(catalog).filter(([t]) => study.terms.tables.includes(t)));
  }, [catalog, study]);
  const completion = useMemo(() => Object.fromEntries(Object.entries(tables).map(([t, v]) => [t, v.columns.map((c) => c.name)])), [tables]);

  async function run() {
    if (running || !study) return;
    setRunning(true);
    setError(null);
    const request = { sql: editor.current.text(), study: study.id };
    if (study.terms.privacy === 'dp') {
      request.epsilon = Number(dp.epsilon);
      if (dp.bounds.trim()) {
        try {
          request.bounds = JSON.parse(dp.bounds);
        } catch {
          setError('Bounds must be JSON, for example {"value_as_number": [0, 300]}.');
          setRunning(false);
          return;
        }
      }
    }
    setHeld(null);
    try {
      const answer = await api.query(request);
      // 202: a check marked "review" fired; the result waits for the custodians.
      if (answer?.status === 'awaiting_review') {
        setResult(null);
        setHeld(answer);
      } else {
        setResult(answer);
      }
    } catch (e) {
      setResult(null);
      setError(e.message);
    }
    setRuns((n) => n + 1);
    setRunning(false);
  }

  if (studiesError) return <Notice kind="error">{studiesError}</Notice>;
  if (!studies) return <p>Loading studies…</p>;
  if (!studies.length) return <Notice>No study of yours is approved at any site yet. Propose one on the Studies page.</Notice>;
  return (
    <>
      <h1>Query</h1>
      <div class="toolbar">
        <StudyPicker studies={studies} value={studyId} onChange={(id) => { setStudyId(id); setResult(null); }} />
        {study?.terms.privacy === 'dp' && (
          <>
            <label class="inline">ε for this query
              <input type="number" min="0.001" step="0.01" value={dp.epsilon} onInput={(e) => setDp({ ...dp, epsilon: e.currentTarget.value })} data-testid="epsilon" />
            </label>
            <label class="inline">bounds
              <input placeholder='{"value_as_number": [0, 300]}' value={dp.bounds} onInput={(e) => setDp({ ...dp, bounds: e.currentTarget.value })} />
            </label>
          </>
        )}
      </div>
      <div class="workspace">
        <SchemaPanel tables={tables} onPick={(name) => editor.current?.insert(name)} />
        <div class="work">
          <SqlEditor initial={EXAMPLE} schema={completion} onRun={run} handle={editor} />
          <div class="actions">
            <button onClick={run} disabled={running} data-testid="run">Run at {approvedSites(study).length} sites</button>
            <small>Ctrl+Enter runs. Only aggregates come back; identifier columns cannot be output.</small>
          </div>
          {running && <Working what="Running the query" sites={approvedSites(study)} />}
          {error && <Notice kind="error" testid="query-error">{error}</Notice>}
          {held && !running && (
            <Notice testid="awaiting-review">
              Awaiting review ({held.id}): {Object.keys(held.checks).map((c) => c.replace(/_/g, ' ')).join(', ')} fired, so a custodian of
              each of {Object.keys(held.sites).join(', ')} must approve the result before you receive it. Follow it on the <a href="#/reviews">Reviews</a> page.
            </Notice>
          )}
          {result && !running && (
            <section class="result">
              <ProtectionLine privacy={result.privacy} />
              <SiteStatus sites={result.sites} privacy={result.privacy} />
              <div class="actions">
                <button class="secondary" onClick={() => downloadCsv(result)} data-testid="csv">Export CSV</button>
              </div>
              <ResultTable result={result} />
              <ResultChart result={result} />
              <Evidence evidence={result.privacy?.evidence} />
            </section>
          )}
        </div>
        {study?.terms.privacy === 'dp' && <Budget api={api} study={study.id} refresh={runs} />}
      </div>
    </>
  );
}
