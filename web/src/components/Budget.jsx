// A DP study's privacy budget at each approved site, as the sites' own ledgers report it.
import { useEffect, useState } from 'preact/hooks';
import { epsilon } from '../format.js';

export function Budget({ api, study, refresh }) {
  const [budget, setBudget] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    setError(null);
    api.budget(study).then(setBudget).catch((e) => setError(e.message));
  }, [api, study, refresh]);
  if (error) return <p class="hint">Budget unavailable: {error}</p>;
  if (!budget) return null;
  return (
    <div class="budget" data-testid="budget">
      <h3>Privacy budget</h3>
      {Object.entries(budget.sites).map(([site, b]) =>
        b.status === 'answered' || b.epsilon !== undefined ? (
          <div class="meter" title={`${site}: ${epsilon(b.epsilon_spent)} of ${epsilon(b.epsilon)} spent`}>
            <span>{site}</span>
            <meter min="0" max={b.epsilon} value={b.epsilon_spent} />
            <span>{epsilon(b.epsilon_remaining)} left</span>
          </div>
        ) : (
          <div class="meter"><span>{site}</span><small>{b.status}{b.message ? `: ${b.message}` : ''}</small></div>
        ),
      )}
    </div>
  );
}
