// The network catalogue: which sites answer, which tables they offer, and roughly how many
// people each holds (each site's own rounded, floored count). Metadata only.
import { useEffect, useState } from 'preact/hooks';
import { Notice } from '../components/Notice.jsx';
import { personCount, totalPersons } from '../format.js';

export function Network({ api }) {
  const [sites, setSites] = useState(null);
  const [catalog, setCatalog] = useState(null);
  const [asOf, setAsOf] = useState(null);
  const [error, setError] = useState(null);
  const [open, setOpen] = useState(null);

  useEffect(() => {
    Promise.all([api.sites(), api.catalog()])
      .then(([s, c]) => {
        setSites(s.sites);
        setCatalog(c.tables);
        setAsOf(c.as_of_us);
      })
      .catch((e) => setError(e.message));
  }, [api]);

  if (error) return <Notice kind="error">{error}</Notice>;
  if (!sites || !catalog) return <p>Asking the sites…</p>;
  const names = sites.map((s) => s.name);
  return (
    <>
      <h1>Network</h1>
      <section class="sites" data-testid="sites">
        {sites.map((s) => (
          <div class={`site ${s.status}`} title={s.message ?? ''}>
            <span class="dot" /> {s.name} <small>{s.status === 'up' ? 'answering' : `down: ${s.message ?? ''}`}</small>
          </div>
        ))}
      </section>
      <h2>Tables</h2>
      <p class="hint">
        People per table are each hospital's own published figure, rounded, and never below its
        threshold. Identifier columns can be filtered and joined on but never output or grouped by.
        Read from the sites at <span data-testid="as-of" data-us={asOf}>{new Date(asOf / 1000).toLocaleString()}</span>.
      </p>
      <table class="grid" data-testid="catalogue">
        <thead>
          <tr>
            <th>Table</th>
            {names.map((n) => <th class="num">{n}</th>)}
            <th class="num">Network</th>
            <th>Columns</th>
          </tr>
        </thead>
        <tbody>
          {Object.entries(catalog).map(([name, t]) => (
            <>
              <tr>
                <td><code>{name}</code></td>
                {names.map((n) => (
                  <td class="num">{t.sites.includes(n) ? personCount(t.persons[n]) : <small>not offered</small>}</td>
                ))}
                <td class="num">{totalPersons(t.persons)}</td>
                <td>
                  <button class="link" onClick={() => setOpen(open === name ? null : name)}>
                    {t.columns.length} columns {open === name ? '▴' : '▾'}
                  </button>
                </td>
              </tr>
              {open === name && (
                <tr class="detail">
                  <td colSpan={names.length + 3}>
                    {t.columns.map((c) => (
                      <span class={`column ${c.identifier ? 'identifier' : ''}`} title={c.type}>
                        {c.name}
                        {c.identifier && <small> identifier</small>}
                      </span>
                    ))}
                  </td>
                </tr>
              )}
            </>
          ))}
        </tbody>
      </table>
    </>
  );
}
