// A real OpenID Connect provider (panva's oidc-provider) for the test suite, never for production.
//
//   node tests/oidc/provider.mjs --config FILE [--port N] [--host 127.0.0.1] [--issuer http://127.0.0.1:N]
//                                [--exit-with-stdin]
//
// --port 0 (the default) lets the OS pick a free port; the issuer then defaults to http://HOST:PORT.
// Prints "oidc-provider ready <issuer>" on stdout once it listens. Errors and rejected requests go to stderr.
//
// The config file (JSON):
//   {
//     "client": {"client_id": "...", "client_secret": "...", "redirect_uris": ["..."],
//                "post_logout_redirect_uris": ["..."], "token_endpoint_auth_method": "client_secret_basic"},
//     "accounts": [{"subject": "...", "username": "...", "password": "...", "name": "...",
//                   "email": "...", "groups": ["..."]}],
//     "ttl": {"AccessToken": 3600, "IdToken": 3600, "DeviceCode": 600, ...}          (optional, seconds)
//   }
//
// State (sessions, grants, codes) lives in memory and the signing key is generated at start: a restart forgets all.
// Pages are plain HTML forms, so a script can sign in with ordinary form posts (see tests/helpers/oidc.py).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const MAX_FORM_BYTES = 64 * 1024;
const INTERACTION_PATH = /^\/interaction\/([^/]+)(?:\/(login|abort))?$/;

const { values: args } = parseArgs({
  options: {
    config: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string', default: '0' },
    issuer: { type: 'string' },
    // Stop when stdin closes, i.e. when the test process that holds its other end dies.
    'exit-with-stdin': { type: 'boolean', default: false },
  },
});
if (!args.config) {
  console.error('usage: node provider.mjs --config FILE [--port N] [--host H] [--issuer URL] [--exit-with-stdin]');
  process.exit(2);
}

const config = JSON.parse(fs.readFileSync(args.config, 'utf8'));
const accounts = loadAccounts(config.accounts ?? []);
const client = clientMetadata(config.client);

function loadAccounts(list) {
  const bySubject = new Map();
  const byUsername = new Map();
  for (const account of list) {
    for (const key of ['subject', 'username', 'password']) {
      if (typeof account[key] !== 'string' || !account[key]) {
        throw new Error(`every account needs a non-empty string "${key}"`);
      }
    }
    if (bySubject.has(account.subject) || byUsername.has(account.username)) {
      throw new Error(`duplicate account ${account.subject} / ${account.username}`);
    }
    bySubject.set(account.subject, account);
    byUsername.set(account.username, account);
  }
  return { bySubject, byUsername };
}

function clientMetadata(given) {
  if (!given?.client_id || !given?.client_secret || !given?.redirect_uris?.length) {
    throw new Error('config.client needs client_id, client_secret and redirect_uris');
  }
  return {
    grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    // auth_time in every ID Token, not only when max_age was asked for.
    require_auth_time: true,
    ...given,
  };
}

function sha256(value) {
  return crypto.createHash('sha256').update(String(value)).digest();
}

function checkPassword(username, password) {
  const account = accounts.byUsername.get(username);
  // Compare digests so that wrong passwords of any length take the same path.
  const ok = crypto.timingSafeEqual(sha256(account ? account.password : ''), sha256(password));
  return account && ok ? account : undefined;
}

function esc(value) {
  return String(value ?? '')
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;');
}

function page(ctx, title, body) {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>${esc(title)}</title></head>
<body>
<h1>${esc(title)}</h1>
${body}
</body>
</html>
`;
}

function errorParagraph(message) {
  return message ? `<p id="error" role="alert">${esc(message)}</p>\n` : '';
}

async function readForm(ctx) {
  const type = ctx.get('content-type').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    ctx.throw(415, 'expected an application/x-www-form-urlencoded form');
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of ctx.req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) ctx.throw(413, 'form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function loginPage(ctx, uid, { username = '', error = '' } = {}) {
  page(
    ctx,
    'Sign-in',
    `${errorParagraph(error)}<form id="login" method="post" action="/interaction/${esc(uid)}/login">
<p><label>Username <input type="text" name="username" value="${esc(username)}" autocomplete="username" autofocus></label></p>
<p><label>Password <input type="password" name="password" autocomplete="current-password"></label></p>
<p><button type="submit">Sign in</button></p>
</form>
<p><a id="abort" href="/interaction/${esc(uid)}/abort">Cancel</a></p>`,
  );
}

async function finishInteraction(ctx, result, mergeWithLastSubmission) {
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission });
  ctx.status = 303;
  ctx.redirect(returnTo);
}

// Consent is granted without asking, for everything the client asked for.
async function grantConsent(ctx, details) {
  const { prompt, params, session, grantId } = details;
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const savedId = await grant.save();
  await finishInteraction(ctx, { consent: grantId ? {} : { grantId: savedId } }, true);
}

async function interactions(ctx, next) {
  const match = INTERACTION_PATH.exec(ctx.path);
  if (!match) return next();
  const [, uid, action] = match;
  ctx.set('cache-control', 'no-store');
  try {
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    if (details.uid !== uid) throw new errors.SessionNotFound('interaction session does not match this URL');
    if (action === 'abort') {
      const result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
      return await finishInteraction(ctx, result, false);
    }
    if (action === 'login') {
      if (ctx.method !== 'POST') ctx.throw(405);
      if (details.prompt.name !== 'login') throw new errors.SessionNotFound('no login is pending');
      const form = await readForm(ctx);
      const username = form.get('username') ?? '';
      const account = checkPassword(username, form.get('password') ?? '');
      if (!account) {
        console.error(`oidc-provider: login refused for username ${JSON.stringify(username)}`);
        return loginPage(ctx, uid, { username, error: 'Invalid username or password.' });
      }
      const result = { login: { accountId: account.subject, amr: ['pwd'], remember: true } };
      return await finishInteraction(ctx, result, false);
    }
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') ctx.throw(405);
    switch (details.prompt.name) {
      case 'login':
        return loginPage(ctx, uid, { username: details.params.login_hint ?? '' });
      case 'consent':
        return await grantConsent(ctx, details);
      default:
        return ctx.throw(501, `prompt ${details.prompt.name} is not implemented`);
    }
  } catch (err) {
    if (!(err instanceof errors.SessionNotFound)) throw err;
    ctx.status = 400;
    return page(ctx, 'Sign-in failed', errorParagraph(`${err.message}: ${err.error_description}`));
  }
}

const ttl = {
  AccessToken: 60 * 60,
  AuthorizationCode: 60,
  DeviceCode: 10 * 60,
  Grant: 14 * 24 * 60 * 60,
  IdToken: 60 * 60,
  Interaction: 60 * 60,
  RefreshToken: 14 * 24 * 60 * 60,
  Session: 14 * 24 * 60 * 60,
  ...config.ttl,
};

const configuration = {
  clients: [client],
  responseTypes: ['code'],
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: false },
    // Without a resource parameter access tokens are opaque and good for the userinfo endpoint only.
    resourceIndicators: { enabled: false },
    revocation: {
      enabled: true,
      allowedPolicy: async (_ctx, who, token) => token.clientId === who.clientId,
    },
    rpInitiatedLogout: {
      enabled: true,
      async logoutSource(ctx, form) {
        page(
          ctx,
          'Sign out',
          `<p>Do you want to sign out from ${esc(ctx.host)}?</p>
${form}
<p><button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm">No, stay signed in</button></p>`,
        );
      },
      async postLogoutSuccessSource(ctx) {
        page(ctx, 'Signed out', '<p id="success">You are signed out.</p>');
      },
    },
    deviceFlow: {
      enabled: true,
      async userCodeInputSource(ctx, form, _out, err) {
        let message = '';
        if (err?.userCode || err?.name === 'NoCodeError') message = 'The code you entered is incorrect. Try again.';
        else if (err?.name === 'AbortedError') message = 'The sign-in request was interrupted.';
        else if (err) message = 'There was an error processing your request.';
        page(
          ctx,
          'Device sign-in',
          `${errorParagraph(message)}<p>Enter the code displayed on your device.</p>
${form}
<p><button type="submit" form="op.deviceInputForm">Continue</button></p>`,
        );
      },
      async userCodeConfirmSource(ctx, form, who, _deviceInfo, userCode) {
        page(
          ctx,
          'Confirm device',
          `<p><strong>${esc(who.clientName || who.clientId)}</strong> asks to sign in on a device showing
the code <code id="user_code">${esc(userCode)}</code>.</p>
${form}
<p><button type="submit" form="op.deviceConfirmForm">Continue</button>
<button type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button></p>`,
        );
      },
      async successSource(ctx) {
        page(ctx, 'Sign-in success', '<p id="success">Your device is signed in; you can close this page.</p>');
      },
    },
  },
  claims: {
    acr: null,
    auth_time: null,
    iss: null,
    sid: null,
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // Put the claims of the granted scopes in the ID Token too, not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  async findAccount(_ctx, sub) {
    const account = accounts.bySubject.get(sub);
    if (!account) return undefined;
    return {
      accountId: sub,
      async claims() {
        return {
          sub,
          name: account.name ?? account.username,
          preferred_username: account.username,
          email: account.email,
          email_verified: account.email ? true : undefined,
          groups: account.groups ?? [],
        };
      },
    };
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  jwks: { keys: [signingKey()] },
  async renderError(ctx, out) {
    page(
      ctx,
      'Error',
      errorParagraph(out.error_description ? `${out.error}: ${out.error_description}` : out.error),
    );
  },
  ttl: Object.fromEntries(Object.entries(ttl).map(([name, seconds]) => [name, () => seconds])),
};

function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `test-${crypto.randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' };
}

// Listen first, so that --port 0 can pick a free port before the issuer (which names it) is fixed.
const server = http.createServer();
server.on('error', (err) => {
  console.error(`oidc-provider: ${err.message}`);
  process.exit(1);
});
await new Promise((resolve) => server.listen(Number(args.port), args.host, resolve));
const { port } = server.address();
const issuer = args.issuer ?? `http://${args.host.includes(':') ? `[${args.host}]` : args.host}:${port}`;

const provider = new Provider(issuer, configuration);
provider.proxy = false;
provider.use(interactions);
for (const event of [
  'authorization.error',
  'grant.error',
  'end_session.error',
  'code_verification.error',
  'revocation.error',
  'userinfo.error',
  'server_error',
]) {
  provider.on(event, (_ctx, err) => {
    if (err.error === 'authorization_pending') return; // every device poll before the user is done
    console.error(`oidc-provider ${event}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`);
    if (event === 'server_error') console.error(err.stack);
  });
}
server.on('request', provider.callback());

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
if (args['exit-with-stdin']) {
  process.stdin.on('end', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume();
}

console.log(`oidc-provider ready ${issuer}`);
