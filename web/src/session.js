// Who is signed in. The token lives in sessionStorage: it is gone when the tab closes, and it is
// never put in a URL. Single sign-on uses oidc-client-ts (authorisation code with PKCE).

const KEY = 'medfed.token';

export function savedToken() {
  return sessionStorage.getItem(KEY);
}

export function saveToken(token) {
  sessionStorage.setItem(KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

async function userManager(oidc) {
  const { UserManager, WebStorageStateStore } = await import('oidc-client-ts');
  return new UserManager({
    authority: oidc.authority,
    client_id: oidc.client_id,
    redirect_uri: `${location.origin}/`,
    post_logout_redirect_uri: `${location.origin}/`,
    response_type: 'code',
    scope: 'openid profile',
    userStore: new WebStorageStateStore({ store: sessionStorage }),
  });
}

/** Sends the browser to the IdP. */
export async function startSingleSignOn(oidc) {
  await (await userManager(oidc)).signinRedirect();
}

/**
 * Completes a sign-in the IdP redirected back to (`?code=…&state=…`), returning the bearer token
 * the hub expects (the ID token when the hub's audience is the portal's client id), or null.
 */
export async function finishSingleSignOn(oidc) {
  const params = new URLSearchParams(location.search);
  if (!oidc || !params.has('code') || !params.has('state')) return null;
  const user = await (await userManager(oidc)).signinRedirectCallback();
  history.replaceState(null, '', `${location.origin}/${location.hash}`);
  return oidc.audience === oidc.client_id ? user.id_token : user.access_token;
}
