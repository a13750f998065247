// A hospital's single sign-on, small enough to read: an OpenID Connect provider on 127.0.0.1
// that does the authorisation-code flow with PKCE for one client and one user, and signs ID
// tokens (RS256) with the test key in crates/cli/tests/fixtures/jwt. It checks what a real IdP
// checks — client, redirect URI, S256 code verifier, single-use codes — so the portal's half of
// the flow is tested, not assumed.
import { createHash, createSign, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const FIXTURES = fileURLToPath(new URL('../../crates/cli/tests/fixtures/jwt/', import.meta.url));
export const JWKS_FILE = `${FIXTURES}rsa-test-jwks.json`;
const KEY = readFileSync(`${FIXTURES}rsa-test-key.pem`, 'utf8');

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function sign(claims) {
  const head = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'rsa-test' }));
  const body = b64url(JSON.stringify(claims));
  const signature = createSign('RSA-SHA256').update(`${head}.${body}`).sign(KEY);
  return `${head}.${body}.${b64url(signature)}`;
}

async function form(req) {
  let text = '';
  for await (const chunk of req) text += chunk;
  return new URLSearchParams(text);
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Starts the IdP. `user` is who signs in: `{ username, roles, sites }`. Resolves to
 * `{ issuer, allowRedirect(uri), stop() }`; the client may only come back to allowed URIs (the
 * portal's address is known only once the hub, which needs the issuer, is up).
 */
export async function startIdp({ clientId, user }) {
  const codes = new Map();
  const redirects = new Set();
  const server = createServer(async (req, res) => {
    const url = new URL(req.url, issuer);
    const cors = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Allow-Headers': '*' };
    const json = (status, body) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...cors });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET, POST' });
      return res.end();
    }
    if (url.pathname === '/.well-known/openid-configuration') {
      return json(200, {
        issuer,
        authorization_endpoint: `${issuer}/authorize`,
        token_endpoint: `${issuer}/token`,
        jwks_uri: `${issuer}/jwks`,
        response_types_supported: ['code'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256'],
        code_challenge_methods_supported: ['S256'],
      });
    }
    if (url.pathname === '/jwks') return json(200, JSON.parse(readFileSync(JWKS_FILE, 'utf8')));
    if (url.pathname === '/authorize' && req.method === 'GET') {
      const p = url.searchParams;
      if (p.get('client_id') !== clientId || !redirects.has(p.get('redirect_uri'))) {
        res.writeHead(400, { 'Content-Type': 'text/plain' });
        return res.end('unknown client or redirect URI');
      }
      if (p.get('response_type') !== 'code' || p.get('code_challenge_method') !== 'S256') {
        res.writeHead(400, { 'Content-Type': 'text/plain' });
        return res.end('only the code flow with S256 PKCE');
      }
      // The consent page: a real IdP would ask for a password here.
      const hidden = ['state', 'nonce', 'code_challenge', 'redirect_uri']
        .map((k) => `<input type="hidden" name="${k}" value="${escape(p.get(k) ?? '')}">`)
        .join('');
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      return res.end(
        `<!doctype html><title>Hospital sign-on</title><form method="post" action="/authorize">` +
          `${hidden}<button>Continue as ${escape(user.username)}</button></form>`,
      );
    }
    if (url.pathname === '/authorize' && req.method === 'POST') {
      const p = await form(req);
      if (!redirects.has(p.get('redirect_uri'))) {
        res.writeHead(400, { 'Content-Type': 'text/plain' });
        return res.end('unknown redirect URI');
      }
      const code = b64url(randomBytes(24));
      codes.set(code, { challenge: p.get('code_challenge'), nonce: p.get('nonce'), redirect: p.get('redirect_uri') });
      const back = new URL(p.get('redirect_uri'));
      back.searchParams.set('code', code);
      back.searchParams.set('state', p.get('state'));
      res.writeHead(302, { Location: back.toString() });
      return res.end();
    }
    if (url.pathname === '/token' && req.method === 'POST') {
      const p = await form(req);
      const grant = codes.get(p.get('code'));
      codes.delete(p.get('code'));
      const verifier = p.get('code_verifier') ?? '';
      const challenge = b64url(createHash('sha256').update(verifier).digest());
      if (!grant || p.get('grant_type') !== 'authorization_code' || p.get('client_id') !== clientId) {
        return json(400, { error: 'invalid_grant' });
      }
      if (p.get('redirect_uri') !== grant.redirect || challenge !== grant.challenge) {
        return json(400, { error: 'invalid_grant', error_description: 'PKCE verifier does not match' });
      }
      const now = Math.floor(Date.now() / 1000);
      const id_token = sign({
        iss: issuer,
        aud: clientId,
        sub: `sso|${user.username}`,
        preferred_username: user.username,
        iat: now,
        exp: now + 600,
        ...(grant.nonce ? { nonce: grant.nonce } : {}),
        medfed_roles: user.roles,
        ...(user.sites ? { medfed_sites: user.sites } : {}),
      });
      return json(200, { access_token: b64url(randomBytes(24)), token_type: 'Bearer', expires_in: 600, id_token });
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;
  return {
    issuer,
    allowRedirect: (uri) => redirects.add(uri),
    stop: () => new Promise((resolve) => server.close(resolve)),
  };
}
