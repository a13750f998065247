// The OMOP schema beside the editor: the study's tables and their columns; a click inserts a
// name. Identifier columns are marked: they may be filtered and joined on, never output.
import { useState } from 'preact/hooks';

export function SchemaPanel({ tables, onPick }) {
  const [open, setOpen] = useState(() => new Set(Object.keys(tables).slice(0, 1)));
  const flip = (t) => {
    const next = new Set(open);
    next.has(t) ? next.delete(t) : next.add(t);
    setOpen(next);
  };
  return (
    <aside class="schema" data-testid="schema">
      <h3>Schema</h3>
      {Object.entries(tables).map(([name, t]) => (
        <div>
          <button class="link table" onClick={() => flip(name)}>{open.has(name) ? '▾' : '▸'} {name}</button>
          {open.has(name) && (
            <ul>
              {t.columns.map((c) => (
                <li class={c.identifier ? 'identifier' : ''} title={c.identifier ? 'identifier: filter and join only' : c.type}>
                  <button class="link" onClick={() => onPick(c.name)}>{c.name}</button> <small>{shortType(c.type)}</small>
                </li>
              ))}
            </ul>
          )}
        </div>
      ))}
    </aside>
  );
}

function shortType(t) {
  return t.replace(/^Timestamp\(.*\)$/, 'timestamp').replace(/^Utf8(View)?$/, 'text').toLowerCase();
}
