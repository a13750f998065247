// Sign in with a medfed API token (from `medfed token issue` or the demo's demo.json), or with
// the hospital's single sign-on when the hub has it configured.
import { useState } from 'preact/hooks';
import { startSingleSignOn } from '../session.js';
import { Notice } from '../components/Notice.jsx';

export function SignIn({ options, error, onToken }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    await onToken(token.trim());
    setBusy(false);
  }
  return (
    <main class="centre">
      <form class="card sign-in" onSubmit={submit}>
        <h1>medfed research portal</h1>
        <p>Questions travel to the hospitals; only protected aggregates come back.</p>
        {options.oidc && (
          <>
            <button type="button" onClick={() => startSingleSignOn(options.oidc)}>
              Sign in with single sign-on
            </button>
            <p class="or">or</p>
          </>
        )}
        <label>
          API token
          <input
            type="password"
            name="token"
            autocomplete="off"
            placeholder="mf_…"
            value={token}
            onInput={(e) => setToken(e.currentTarget.value)}
            required
          />
        </label>
        <button type="submit" disabled={busy || !token.trim()}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
        {error && <Notice kind="error" testid="sign-in-error">{error}</Notice>}
      </form>
    </main>
  );
}
