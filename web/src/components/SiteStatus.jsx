// How each asked site's part ended, and what the release cost in privacy.
import { epsilon, number } from '../format.js';

export function SiteStatus({ sites, privacy }) {
  const perSite = privacy?.sites ?? {};
  return (
    <table class="grid compact" data-testid="site-status">
      <thead>
        <tr><th>Site</th><th>Status</th><th class="num">Time</th><th class="num">Rows withheld</th>{privacy?.mode === 'dp' && <><th class="num">ε spent</th><th class="num">ε left</th></>}</tr>
      </thead>
      <tbody>
        {Object.entries(sites).map(([name, s]) => (
          <tr>
            <td>{name}</td>
            <td class={`status ${s.status}`} title={s.message ?? ''}>{s.status}{s.message ? `: ${s.message}` : ''}</td>
            <td class="num">{number(Math.round(s.elapsed_ms))} ms</td>
            <td class="num">{perSite[name]?.suppressed ?? 0}</td>
            {privacy?.mode === 'dp' && (
              <>
                <td class="num">{epsilon(perSite[name]?.epsilon_spent)}</td>
                <td class="num" data-testid={`epsilon-left-${name}`}>{epsilon(perSite[name]?.epsilon_remaining)}</td>
              </>
            )}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** How the result was protected: one line, then groups withheld unnamed and any notes. */
export function ProtectionLine({ privacy }) {
  if (!privacy) return null;
  const where = privacy.k_applied_to === 'network' ? "the network's total" : "each site's groups";
  const parts = [
    privacy.mode === 'dp'
      ? `Differentially private (${privacy.mechanism ?? 'noise'}), ε ${number(privacy.epsilon)} spent at each answering site`
      : `Exact aggregates; cells under ${privacy.min_cell_count} people withheld (k applied to ${where})`,
  ];
  if (privacy.secure_aggregation) parts.push('combined by secure aggregation');
  const withheld = Object.entries(privacy.withheld_groups ?? {});
  return (
    <div data-testid="protection">
      <p class="hint">{parts.join('; ')}.</p>
      {withheld.map(([why, n]) => (
        <p class="hint" data-testid="withheld-groups">{number(n)} group(s) withheld without a row (their keys were never named to the hub): {why}.</p>
      ))}
      {(privacy.notes ?? []).map((note) => <p class="hint" data-testid="privacy-note">Note: {note}.</p>)}
    </div>
  );
}
