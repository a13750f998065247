// The form a researcher proposes a study with: what it is for, where, and its terms (the
// analyses, tables and privacy the custodians are asked to approve).
import { useEffect, useState } from 'preact/hooks';
import { Notice } from './Notice.jsx';

const ANALYSES = ['sql', 'stats', 'glm', 'survival', 'fedavg'];

export function ProposeStudy({ api, onProposed, onCancel }) {
  const [catalog, setCatalog] = useState(null);
  const [form, setForm] = useState({ title: '', purpose: '', sites: [], tables: [], analyses: ['sql'], privacy: 'exact', epsilon: '1' });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    Promise.all([api.sites(), api.catalog()])
      .then(([s, c]) => {
        setCatalog({ sites: s.sites.map((x) => x.name), tables: Object.keys(c.tables) });
        setForm((f) => ({ ...f, sites: s.sites.map((x) => x.name) }));
      })
      .catch((e) => setError(e.message));
  }, [api]);

  const set = (k, v) => setForm((f) => ({ ...f, [k]: v }));
  const toggle = (k, v) => set(k, form[k].includes(v) ? form[k].filter((x) => x !== v) : [...form[k], v]);

  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const terms = { analyses: form.analyses, tables: form.tables, privacy: form.privacy };
    if (form.privacy === 'dp') terms.epsilon = Number(form.epsilon);
    try {
      onProposed(await api.propose({ title: form.title, purpose: form.purpose, sites: form.sites, terms, members: [] }));
    } catch (err) {
      setError(err.message);
    }
    setBusy(false);
  }

  if (!catalog) return error ? <Notice kind="error">{error}</Notice> : <p>Loading the catalogue…</p>;
  return (
    <form class="card" onSubmit={submit} data-testid="propose">
      <h2>Propose a study</h2>
      <label>Title<input name="title" value={form.title} onInput={(e) => set('title', e.currentTarget.value)} required /></label>
      <label>Purpose<textarea name="purpose" value={form.purpose} onInput={(e) => set('purpose', e.currentTarget.value)} required /></label>
      <fieldset>
        <legend>Sites</legend>
        {catalog.sites.map((s) => (
          <label class="inline"><input type="checkbox" checked={form.sites.includes(s)} onChange={() => toggle('sites', s)} /> {s}</label>
        ))}
      </fieldset>
      <fieldset>
        <legend>Analyses</legend>
        {ANALYSES.map((a) => (
          <label class="inline"><input type="checkbox" checked={form.analyses.includes(a)} onChange={() => toggle('analyses', a)} /> {a}</label>
        ))}
      </fieldset>
      <fieldset>
        <legend>Tables</legend>
        {catalog.tables.map((t) => (
          <label class="inline"><input type="checkbox" name={`table-${t}`} checked={form.tables.includes(t)} onChange={() => toggle('tables', t)} /> {t}</label>
        ))}
      </fieldset>
      <fieldset>
        <legend>Privacy</legend>
        <label class="inline"><input type="radio" name="privacy" checked={form.privacy === 'exact'} onChange={() => set('privacy', 'exact')} /> exact aggregates under disclosure control</label>
        <label class="inline"><input type="radio" name="privacy" checked={form.privacy === 'dp'} onChange={() => set('privacy', 'dp')} /> differential privacy</label>
        {form.privacy === 'dp' && (
          <label>Total ε per site<input type="number" min="0.01" step="0.01" value={form.epsilon} onInput={(e) => set('epsilon', e.currentTarget.value)} /></label>
        )}
      </fieldset>
      {error && <Notice kind="error">{error}</Notice>}
      <div class="actions">
        <button type="submit" disabled={busy}>{busy ? 'Proposing…' : 'Propose'}</button>
        <button type="button" class="secondary" onClick={onCancel}>Cancel</button>
      </div>
    </form>
  );
}
