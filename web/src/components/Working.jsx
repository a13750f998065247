// Progress for work that takes a while: what is being done, where, and for how long so far.
import { useEffect, useState } from 'preact/hooks';

export function Working({ what, sites }) {
  const [started] = useState(() => performance.now());
  const [now, setNow] = useState(started);
  useEffect(() => {
    const t = setInterval(() => setNow(performance.now()), 250);
    return () => clearInterval(t);
  }, []);
  const seconds = ((now - started) / 1000).toFixed(1);
  return (
    <div class="working" role="status" data-testid="working">
      <progress />
      <span>
        {what}
        {sites?.length ? ` at ${sites.length} site${sites.length === 1 ? '' : 's'} (${sites.join(', ')})` : ''} — {seconds} s
      </span>
    </div>
  );
}
