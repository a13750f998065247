// A custodian's page: the studies that ask to run at their sites, and their decision for each.
import { useEffect, useState } from 'preact/hooks';
import { Notice } from '../components/Notice.jsx';
import { Decisions } from './Studies.jsx';

export function Approvals({ api, who }) {
  const [studies, setStudies] = useState(null);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const [reasons, setReasons] = useState({});

  const load = () => api.studies().then((s) => setStudies(s.studies)).catch((e) => setError(e.message));
  useEffect(() => {
    load();
  }, [api]);

  async function decide(study, site, decision) {
    setError(null);
    setDone(null);
    try {
      // The hub answers with the study as decided: the card and the notice change together.
      const decided = await api.decide(study.id, site, decision, reasons[`${study.id}/${site}`]);
      setStudies((all) => all.map((s) => (s.id === decided.id ? decided : s)));
      setDone(`${site}: study ${study.id} ${decision === 'approve' ? 'approved' : 'rejected'}.`);
    } catch (e) {
      setError(e.message);
    }
  }

  if (!studies) return error ? <Notice kind="error">{error}</Notice> : <p>Loading studies…</p>;
  const mine = studies.filter((s) => who.sites.some((site) => site in s.sites));
  return (
    <>
      <h1>Approvals for {who.sites.join(', ')}</h1>
      {done && <Notice kind="ok" testid="decided">{done}</Notice>}
      {error && <Notice kind="error">{error}</Notice>}
      {mine.length === 0 && <p>No study asks to run at your sites.</p>}
      {mine.map((s) => (
        <article class="card study" data-testid={`study-${s.id}`}>
          <h2>{s.title} <code>{s.id}</code></h2>
          <p>{s.purpose}</p>
          <p>
            <small>
              Proposed by {s.proposer}. May run {s.terms.analyses.join(', ')} on {s.terms.tables.join(', ')}
              {s.terms.columns?.length ? ` (columns ${s.terms.columns.join(', ')})` : ''},{' '}
              {s.terms.privacy === 'dp' ? `with differential privacy, ε ${s.terms.epsilon} per site` : 'exact aggregates under disclosure control'}.
            </small>
          </p>
          <Decisions sites={s.sites} />
          {who.sites.filter((site) => site in s.sites).map((site) => (
            <div class="decide">
              <strong>{site}</strong>
              <input
                placeholder="Reason (kept in the audit trail)"
                value={reasons[`${s.id}/${site}`] ?? ''}
                onInput={(e) => setReasons({ ...reasons, [`${s.id}/${site}`]: e.currentTarget.value })}
              />
              <button onClick={() => decide(s, site, 'approve')} disabled={s.sites[site].state === 'approved'}>Approve</button>
              <button class="danger" onClick={() => decide(s, site, 'reject')} disabled={s.sites[site].state === 'rejected'}>Reject</button>
            </div>
          ))}
        </article>
      ))}
    </>
  );
}
