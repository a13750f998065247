// What the airlock checked on a release (the same evidence the audit entry holds): each check,
// its setting, what it judged and its outcome.
import { number } from '../format.js';

export function Evidence({ evidence }) {
  if (!evidence?.checks?.length) return null;
  return (
    <details class="evidence" data-testid="evidence">
      <summary>Checks run on this release ({evidence.checks.filter((c) => c.outcome === 'pass').length} of {evidence.checks.length} passed with nothing withheld)</summary>
      <table class="grid compact">
        <thead>
          <tr><th>Check</th><th>Setting</th><th>Judged on</th><th>Outcome</th><th class="num">Groups</th></tr>
        </thead>
        <tbody>
          {evidence.checks.map((c) => (
            <tr data-testid={`check-${c.check}`}>
              <td>{c.check.replace(/_/g, ' ')}</td>
              <td>{c.setting}</td>
              <td>{c.judged_on}</td>
              <td class={`outcome ${c.outcome}`}>{c.outcome}</td>
              <td class="num">{c.withheld ? number(c.withheld) : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </details>
  );
}
