// The approved studies a piece of work can run under (approved by at least one site).
import { useEffect, useState } from 'preact/hooks';

export function useStudies(api) {
  const [studies, setStudies] = useState(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    api.studies()
      .then((s) => setStudies(s.studies.filter((x) => Object.values(x.sites).some((d) => d.state === 'approved'))))
      .catch((e) => setError(e.message));
  }, [api]);
  return [studies, error];
}

export function StudyPicker({ studies, value, onChange }) {
  return (
    <label class="inline">
      Study
      <select value={value} onChange={(e) => onChange(e.currentTarget.value)} data-testid="study">
        {studies.map((s) => (
          <option value={s.id}>{s.title} ({s.terms.privacy === 'dp' ? 'DP' : 'exact'}; {Object.entries(s.sites).filter(([, d]) => d.state === 'approved').map(([n]) => n).join(', ')})</option>
        ))}
      </select>
    </label>
  );
}

export const approvedSites = (study) => Object.entries(study?.sites ?? {}).filter(([, d]) => d.state === 'approved').map(([n]) => n);
