// The portal's shell: sign-in, the pages a role may use, and hash routing between them.
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { client, signInOptions } from './api.js';
import { finishSingleSignOn, forgetToken, savedToken, saveToken } from './session.js';
import { SignIn } from './pages/SignIn.jsx';
import { Network } from './pages/Network.jsx';
import { Studies } from './pages/Studies.jsx';
import { Approvals } from './pages/Approvals.jsx';
import { Workspace } from './pages/Workspace.jsx';
import { Analyses } from './pages/Analyses.jsx';
import { Audit } from './pages/Audit.jsx';
import { Reviews } from './pages/Reviews.jsx';
import { Notice } from './components/Notice.jsx';
import './style.css';

/** Each page, and the roles it is for. The hub's policy decides in the end; this keeps people
 *  from being shown pages that would only refuse them. */
export const PAGES = [
  { path: 'network', title: 'Network', roles: ['researcher', 'clinician', 'custodian', 'auditor', 'admin'], page: Network },
  { path: 'studies', title: 'Studies', roles: ['researcher', 'clinician', 'custodian', 'admin'], page: Studies },
  { path: 'query', title: 'Query', roles: ['researcher', 'clinician'], page: Workspace },
  { path: 'analyses', title: 'Analyses', roles: ['researcher', 'clinician'], page: Analyses },
  { path: 'approvals', title: 'Approvals', roles: ['custodian'], page: Approvals },
  { path: 'reviews', title: 'Reviews', roles: ['researcher', 'clinician', 'custodian', 'auditor', 'admin'], page: Reviews },
  { path: 'audit', title: 'Audit trail', roles: ['auditor'], page: Audit },
];

const allowed = (page, who) => page.roles.some((r) => who.roles.includes(r));

function currentPath() {
  return location.hash.replace(/^#\/?/, '').split('?')[0] || '';
}

function App() {
  const [who, setWho] = useState(null);
  const [api, setApi] = useState(null);
  const [options, setOptions] = useState({ oidc: null });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(true);
  const [path, setPath] = useState(currentPath());

  useEffect(() => {
    const onHash = () => setPath(currentPath());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  async function signIn(token) {
    setError(null);
    const api = client(token);
    try {
      const me = await api.whoami();
      saveToken(token);
      setApi(api);
      setWho(me);
    } catch (e) {
      forgetToken();
      setError(e.status === 401 ? 'That token is not valid: unknown, revoked or expired.' : e.message);
    }
  }

  useEffect(() => {
    (async () => {
      const opts = await signInOptions();
      setOptions(opts);
      try {
        const token = (await finishSingleSignOn(opts.oidc)) ?? savedToken();
        if (token) await signIn(token);
      } catch (e) {
        setError(`Single sign-on did not complete: ${e.message}`);
      }
      setBusy(false);
    })();
  }, []);

  function signOut() {
    forgetToken();
    setWho(null);
    setApi(null);
    location.hash = '';
  }

  if (busy) return <main class="centre"><p>Loading…</p></main>;
  if (!who) return <SignIn options={options} error={error} onToken={signIn} />;

  const mine = PAGES.filter((p) => allowed(p, who));
  const page = PAGES.find((p) => p.path === path) ?? mine[0];
  const Page = page.page;
  return (
    <>
      <header class="bar">
        <strong class="brand">medfed</strong>
        <nav>
          {mine.map((p) => (
            <a href={`#/${p.path}`} class={p === page ? 'active' : ''}>{p.title}</a>
          ))}
        </nav>
        <span class="who" data-testid="who">
          {who.id} · {who.roles.join(', ')}
          {who.sites?.length ? ` (${who.sites.join(', ')})` : ''}
        </span>
        <button class="link" onClick={signOut}>Sign out</button>
      </header>
      <main>
        {allowed(page, who) ? (
          <Page api={api} who={who} />
        ) : (
          <Notice kind="error" testid="not-allowed">
            The {page.title} page is for {page.roles.join(' or ')}s. You are signed in as {who.roles.join(', ')}.
          </Notice>
        )}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app'));
