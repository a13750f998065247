// Model fitting from a form: an exact federated GLM (the pooled data's answer) and Kaplan–Meier
// curves, each run under one of the researcher's approved studies.
import { useEffect, useState } from 'preact/hooks';
import { Notice } from '../components/Notice.jsx';
import { Working } from '../components/Working.jsx';
import { KmChart } from '../components/KmChart.jsx';
import { ProtectionLine, SiteStatus } from '../components/SiteStatus.jsx';
import { StudyPicker, approvedSites, useStudies } from '../components/StudyPicker.jsx';
import { number } from '../format.js';

const FORMS = {
  glm: { title: 'Generalised linear model', fields: { table: 'person', formula: 'year_of_birth ~ factor(gender_concept_id)', family: 'gaussian', where: '' } },
  km: { title: 'Kaplan–Meier', fields: { table: 'readmission', time: 'length_of_stay', event: 'readmitted_30d', group: 'male', bin_width: '1', max_time: '15', where: '' } },
};

function Field({ name, value, onInput, children }) {
  return (
    <label>
      {name.replace('_', ' ')}
      {children ?? <input name={name} value={value} onInput={(e) => onInput(e.currentTarget.value)} />}
    </label>
  );
}

export function Analyses({ api }) {
  const [studies, studiesError] = useStudies(api);
  const [studyId, setStudyId] = useState('');
  const [kind, setKind] = useState('glm');
  const [fields, setFields] = useState(FORMS.glm.fields);
  const [running, setRunning] = useState(false);
  const [fit, setFit] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    if (studies?.length && !studyId) setStudyId(studies[0].id);
  }, [studies]);

  const study = studies?.find((s) => s.id === studyId);
  const choose = (k) => { setKind(k); setFields(FORMS[k].fields); setFit(null); setError(null); };
  const set = (k) => (v) => setFields({ ...fields, [k]: v });

  async function run(e) {
    e.preventDefault();
    setRunning(true);
    setError(null);
    setFit(null);
    const body = { study: studyId, ...Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== '')) };
    if (kind === 'km') {
      body.bin_width = Number(body.bin_width);
      body.max_time = Number(body.max_time);
    }
    try {
      setFit({ kind, ...(await (kind === 'glm' ? api.glm(body) : api.km(body))) });
    } catch (err) {
      setError(err.message);
    }
    setRunning(false);
  }

  if (studiesError) return <Notice kind="error">{studiesError}</Notice>;
  if (!studies) return <p>Loading studies…</p>;
  if (!studies.length) return <Notice>No study of yours is approved at any site yet.</Notice>;
  return (
    <>
      <h1>Analyses</h1>
      <div class="tabs">
        {Object.entries(FORMS).map(([k, f]) => (
          <button class={k === kind ? 'tab active' : 'tab'} onClick={() => choose(k)} data-testid={`tab-${k}`}>{f.title}</button>
        ))}
      </div>
      <form class="card form-grid" onSubmit={run} data-testid={`form-${kind}`}>
        <StudyPicker studies={studies} value={studyId} onChange={setStudyId} />
        {Object.entries(fields).map(([k, v]) =>
          k === 'family' ? (
            <Field name="family">
              <select value={v} onChange={(e) => set(k)(e.currentTarget.value)}>
                {['gaussian', 'binomial', 'poisson'].map((f) => <option>{f}</option>)}
              </select>
            </Field>
          ) : (
            <Field name={k} value={v} onInput={set(k)} />
          ),
        )}
        <div class="actions"><button type="submit" disabled={running} data-testid="fit">Fit</button></div>
      </form>
      {running && <Working what={kind === 'glm' ? 'Fitting (one round trip per iteration)' : 'Counting events and people at risk'} sites={approvedSites(study)} />}
      {error && <Notice kind="error" testid="analysis-error">{error}</Notice>}
      {fit && (
        <section class="result">
          <ProtectionLine privacy={fit.privacy} />
          {fit.kind === 'glm' ? <Coefficients fit={fit} /> : <KmChart fit={fit} />}
          <SiteStatus sites={fit.sites} privacy={fit.privacy} />
        </section>
      )}
    </>
  );
}

function Coefficients({ fit }) {
  return (
    <>
      <p class="hint">
        {fit.family} ({fit.link} link), n = {number(fit.n)}, {fit.converged ? `converged in ${fit.iterations} iterations` : 'did not converge'};
        deviance {number(fit.deviance)} on {number(fit.df_residual)} df; AIC {number(fit.aic)}.
      </p>
      <table class="grid" data-testid="coefficients">
        <thead><tr><th>Term</th><th class="num">Estimate</th><th class="num">Std. error</th><th class="num">{fit.statistic ?? 'z'}</th><th class="num">p</th><th class="num">95% CI</th></tr></thead>
        <tbody>
          {Object.entries(fit.coefficients).map(([term, c]) => (
            <tr>
              <td><code>{term}</code></td>
              <td class="num">{number(c.estimate)}</td>
              <td class="num">{number(c.std_error)}</td>
              <td class="num">{number(c.z)}</td>
              <td class="num">{c.p < 1e-4 ? '< 0.0001' : number(c.p)}</td>
              <td class="num">{number(c.ci95[0])} – {number(c.ci95[1])}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
