// Releases held for review: a check the network or a site marked "review" fired, so the result
// waits for a custodian of every contributing site. Custodians see the result and the evidence
// and decide for their sites; researchers follow their own and read the result once approved.
import { useEffect, useState } from 'preact/hooks';
import { Notice } from '../components/Notice.jsx';
import { Evidence } from '../components/Evidence.jsx';
import { ResultTable } from '../components/ResultTable.jsx';

const STATUS = { awaiting_review: 'awaiting review', approved: 'approved', rejected: 'rejected' };

export function Reviews({ api, who }) {
  const [reviews, setReviews] = useState(null);
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const [reasons, setReasons] = useState({});

  useEffect(() => {
    api.reviews().then(setReviews).catch((e) => setError(e.message));
  }, [api]);

  async function decide(review, decision) {
    setError(null);
    setDone(null);
    try {
      const decided = await api.decideReview(review.id, decision, reasons[review.id]);
      setReviews((all) => all.map((r) => (r.id === decided.id ? decided : r)));
      setDone(`Review ${review.id}: ${decision === 'approve' ? 'approved' : 'rejected'} for your sites; it is now ${STATUS[decided.status]}.`);
    } catch (e) {
      setError(e.message);
    }
  }

  if (!reviews) return error ? <Notice kind="error">{error}</Notice> : <p>Loading reviews…</p>;
  const mySites = (r) => Object.keys(r.sites).filter((s) => who.sites?.includes(s));
  return (
    <>
      <h1>Reviews</h1>
      {done && <Notice kind="ok" testid="reviewed">{done}</Notice>}
      {error && <Notice kind="error">{error}</Notice>}
      {reviews.length === 0 && <p data-testid="no-reviews">No release is held for review.</p>}
      {reviews.map((r) => (
        <article class="card review" data-testid={`review-${r.id}`}>
          <h2>
            {r.id} <span class={`status ${r.status}`} data-testid="review-status">{STATUS[r.status] ?? r.status}</span>
          </h2>
          <p><small>Study <code>{r.study}</code>, asked by {r.researcher}. Held because {Object.keys(r.checks).map((c) => c.replace(/_/g, ' ')).join(', ')} fired.</small></p>
          <pre class="sql">{r.sql}</pre>
          <ul class="decisions">
            {Object.entries(r.sites).map(([site, d]) => (
              <li data-testid={`review-decision-${site}`}>
                {site}: {d.decision}{d.decided_by ? ` by ${d.decided_by}` : ''}{d.reason ? ` (${d.reason})` : ''}
              </li>
            ))}
          </ul>
          <Evidence evidence={r.evidence} />
          {r.result ? <ResultTable result={r.result} /> : <p class="hint">The result is shown once every contributing site has approved it.</p>}
          {r.status === 'awaiting_review' && mySites(r).length > 0 && (
            <div class="decide">
              <strong>{mySites(r).join(', ')}</strong>
              <input
                placeholder="Reason (kept in the audit trail)"
                value={reasons[r.id] ?? ''}
                onInput={(e) => setReasons({ ...reasons, [r.id]: e.currentTarget.value })}
              />
              <button onClick={() => decide(r, 'approve')}>Approve</button>
              <button class="danger" onClick={() => decide(r, 'reject')}>Reject</button>
            </div>
          )}
        </article>
      ))}
    </>
  );
}
