// Studies: the unit of approval. Researchers propose; each site's custodian decides for their
// site; the state of every site's decision is shown with the study.
import { useEffect, useState } from 'preact/hooks';
import { Notice } from '../components/Notice.jsx';
import { ProposeStudy } from '../components/ProposeStudy.jsx';

export function Decisions({ sites }) {
  return (
    <span class="decisions">
      {Object.entries(sites).map(([site, d]) => (
        <span class={`chip ${d.state}`} title={d.reason ?? ''} data-testid={`decision-${site}`}>
          {site}: {d.state}
        </span>
      ))}
    </span>
  );
}

export function Studies({ api, who }) {
  const [studies, setStudies] = useState(null);
  const [error, setError] = useState(null);
  const [proposing, setProposing] = useState(false);
  const [done, setDone] = useState(null);
  const canPropose = who.roles.some((r) => r === 'researcher' || r === 'clinician');

  const load = () =>
    api.studies().then((s) => setStudies(s.studies)).catch((e) => setError(e.message));
  useEffect(() => {
    load();
  }, [api]);

  if (error) return <Notice kind="error">{error}</Notice>;
  if (!studies) return <p>Loading studies…</p>;
  return (
    <>
      <h1>Studies</h1>
      {done && <Notice kind="ok">{done}</Notice>}
      {canPropose && !proposing && <button onClick={() => setProposing(true)}>Propose a study</button>}
      {proposing && (
        <ProposeStudy
          api={api}
          onCancel={() => setProposing(false)}
          onProposed={(s) => {
            setProposing(false);
            setDone(`Study ${s.id} proposed. Each site's custodian will now approve or reject it.`);
            load();
          }}
        />
      )}
      {studies.length === 0 ? (
        <p>No studies yet.</p>
      ) : (
        <table class="grid" data-testid="studies">
          <thead>
            <tr><th>Study</th><th>Title</th><th>Proposer</th><th>Privacy</th><th>May use</th><th>Sites</th></tr>
          </thead>
          <tbody>
            {studies.map((s) => (
              <tr>
                <td><code>{s.id}</code></td>
                <td title={s.purpose}>{s.title}</td>
                <td>{s.proposer}</td>
                <td>{s.terms.privacy === 'dp' ? `differential privacy, ε ${s.terms.epsilon}` : 'exact, disclosure-controlled'}</td>
                <td><small>{s.terms.analyses.join(', ')} on {s.terms.tables.join(', ')}</small></td>
                <td><Decisions sites={s.sites} /></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
