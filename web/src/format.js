// Numbers and counts as people read them.

const int = new Intl.NumberFormat('en-GB');

/** A site's published person count: `{"about": 1230}` → "≈ 1,230", `{"fewer_than": 10}` → "< 10". */
export function personCount(p) {
  if (!p) return '—';
  if (p.about !== undefined) return `≈ ${int.format(p.about)}`;
  if (p.fewer_than !== undefined) return `< ${int.format(p.fewer_than)}`;
  return '—';
}

/** The network total of published counts (a lower bound when some site says "fewer than"). */
export function totalPersons(persons) {
  const counts = Object.values(persons ?? {});
  if (!counts.length) return '—';
  const sum = counts.reduce((s, p) => s + (p.about ?? 0), 0);
  const some = counts.some((p) => p.fewer_than !== undefined);
  return `≈ ${int.format(sum)}${some ? ' +' : ''}`;
}

/** A statistic: integers as they are (years and concept ids must not gain separators), others
 *  to 4 significant figures. */
export function number(v) {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3);
  return v.toPrecision(4).replace(/\.?0+$/, '');
}

export function epsilon(v) {
  return v === null || v === undefined ? '—' : `ε ${Number(v).toFixed(3).replace(/\.?0+$/, '')}`;
}
