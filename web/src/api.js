// The hub's HTTP API, as the portal uses it: the same /v1 routes (and the same token) a notebook
// uses. Every failure becomes an ApiError whose message is a sentence a person can act on.

/** A refused or failed call: `status` is the HTTP status (0 when the hub could not be reached). */
export class ApiError extends Error {
  constructor(status, message, kind) {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

const PLAIN = {
  0: 'The hub could not be reached. Is it running, and is this the right address?',
  401: 'Your sign-in is not valid any more. Please sign in again.',
  403: 'You are not allowed to do this.',
  404: 'There is no such thing here.',
  503: 'No site answered in time. Try again, or ask which sites are down on the Network page.',
};

/** Turns the hub's `{"error", "kind"}` body into one readable sentence. */
export function explain(status, body) {
  const detail = body && typeof body === 'object' ? body.error : null;
  if (status === 401) return PLAIN[401];
  if (status === 403 && detail) return `Not allowed: ${stripPrefix(detail)}.`.replace(/\.\.$/, '.');
  if (detail) return sentence(stripPrefix(detail));
  return PLAIN[status] ?? `The hub answered ${status}.`;
}

function stripPrefix(s) {
  return String(s).replace(/^(forbidden|invalid|refused|not found):\s*/i, '');
}

function sentence(s) {
  const t = s.trim();
  const first = t.charAt(0).toUpperCase() + t.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** A client bound to one token. */
export function client(token) {
  async function call(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: {
          Authorization: `Bearer ${token}`,
          Accept: 'application/json',
          ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, PLAIN[0]);
    }
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (!response.ok) throw new ApiError(response.status, explain(response.status, parsed), parsed?.kind);
    return parsed;
  }
  const q = (params) => {
    const s = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== '')).toString();
    return s ? `?${s}` : '';
  };
  return {
    whoami: () => call('GET', '/v1/whoami'),
    sites: () => call('GET', '/v1/sites'),
    catalog: () => call('GET', '/v1/catalog'),
    studies: () => call('GET', '/v1/studies'),
    study: (id) => call('GET', `/v1/studies/${encodeURIComponent(id)}`),
    propose: (study) => call('POST', '/v1/studies', study),
    decide: (id, site, decision, reason) =>
      call('POST', `/v1/studies/${encodeURIComponent(id)}/decisions`, { site, decision, reason: reason || undefined }),
    budget: (id) => call('GET', `/v1/studies/${encodeURIComponent(id)}/budget`),
    query: (request) => call('POST', '/v1/queries', request),
    glm: (request) => call('POST', '/v1/analyses/glm', request),
    km: (request) => call('POST', '/v1/analyses/km', request),
    reviews: () => call('GET', '/v1/reviews'),
    review: (id) => call('GET', `/v1/reviews/${encodeURIComponent(id)}`),
    decideReview: (id, decision, reason) =>
      call('POST', `/v1/reviews/${encodeURIComponent(id)}`, { decision, reason: reason || undefined }),
    audit: (after, limit) => call('GET', `/v1/audit${q({ after, limit })}`),
    verifyAudit: () => call('GET', '/v1/audit/verify'),
  };
}

/** The sign-in options (no token needed). */
export async function signInOptions() {
  try {
    const r = await fetch('/portal/config.json');
    return r.ok ? await r.json() : { oidc: null };
  } catch {
    return { oidc: null };
  }
}
