// A certified OpenID Provider (panva's oidc-provider, pinned in package-lock.json) on
// 127.0.0.1 for tests/oidc.rs. Environment:
//
//   OIDC_PORT          the port (the issuer is http://127.0.0.1:PORT)
//   OIDC_REDIRECT      zhiku's callback URL (the client `zhiku` may redirect only there)
//   OIDC_POST_LOGOUT   where the provider's logout may send the browser back to
//   OIDC_KEYS          a JSON file with the signing keys (private JWKs); made with two RSA keys,
//                      k1 and k2, when missing, so a restart keeps them
//   OIDC_SIGNING_KID   the key that signs and is published (default k1): restarting with k2
//                      is a key rotation
//
// Clients: `zhiku` (secret zhiku-secret-1, PKCE required) and `other-app`. Users (any
// password; devInteractions' login form): ann (staff, platform), ben (staff), eve (mail at a
// domain zhiku does not allow). Consent is given up front (first-party clients).
//
// Test hooks (for refusals the provider itself would never produce):
//   POST /__test/tamper?mode=MODE   the next token response's ID token is changed, once:
//     aud      re-signed with the provider's key, audience `other-app`
//     expired  re-signed with the provider's key, expired an hour ago
//     forged   re-signed with a key the provider does not publish (kid `forged`)
//     replay   the ID token of the previous token response, as it was (an old nonce)
//
// Prints "oidc-provider listening on http://127.0.0.1:PORT" when ready.
import crypto from 'node:crypto';
import fs from 'node:fs';
import Provider from 'oidc-provider';

const PORT = Number(process.env.OIDC_PORT || 0);
const REDIRECT = process.env.OIDC_REDIRECT;
const POST_LOGOUT = process.env.OIDC_POST_LOGOUT;
const KEYS = process.env.OIDC_KEYS;
const KID = process.env.OIDC_SIGNING_KID || 'k1';
if (!PORT || !REDIRECT || !POST_LOGOUT || !KEYS) {
  console.error('set OIDC_PORT, OIDC_REDIRECT, OIDC_POST_LOGOUT and OIDC_KEYS (tests/oidc.rs does)');
  process.exit(2);
}
const ISSUER = `http://127.0.0.1:${PORT}`;

function rsaJwk(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

if (!fs.existsSync(KEYS)) {
  fs.writeFileSync(KEYS, JSON.stringify({ keys: [rsaJwk('k1'), rsaJwk('k2')] }));
}
const all = JSON.parse(fs.readFileSync(KEYS, 'utf8')).keys;
const signing = all.find((k) => k.kid === KID);
if (!signing) {
  console.error(`no key ${KID} in ${KEYS}`);
  process.exit(2);
}
const outsider = rsaJwk('forged');

const USERS = {
  ann: { name: 'Ann Lee', email: 'ann@corp.example.com', groups: ['staff', 'platform'] },
  ben: { name: 'Ben Wu', email: 'ben@corp.example.com', groups: ['staff'] },
  eve: { name: 'Eve Ma', email: 'eve@other.example.com', groups: ['staff'] },
};

const configuration = {
  clients: [
    {
      client_id: 'zhiku',
      client_secret: 'zhiku-secret-1',
      redirect_uris: [REDIRECT],
      post_logout_redirect_uris: [POST_LOGOUT],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'other-app',
      client_secret: 'other-secret-1',
      redirect_uris: ['http://127.0.0.1:9/cb'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  jwks: { keys: [signing] },
  pkce: { required: () => true },
  // Scope claims go into the ID token (zhiku reads groups from there, as from Keycloak).
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'groups'],
    email: ['email', 'email_verified'],
  },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        ctx.body = `<!doctype html><html><head><meta charset="utf-8"><title>Log out</title></head>
<body><h1>Test provider: sign out?</h1>${form}
<button autofocus type="submit" form="op.logoutForm" value="yes" name="logout" id="op-logout">Yes, sign me out</button>
</body></html>`;
      },
    },
  },
  ttl: { IdToken: 3600, AccessToken: 3600, Interaction: 600, Session: 3600, Grant: 3600 },
  async findAccount(ctx, id) {
    const u = USERS[id];
    if (!u) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: u.name,
          email: u.email,
          email_verified: true,
          groups: u.groups,
        };
      },
    };
  },
  // First-party clients: consent is given, so the login form is the only page.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile email');
    await grant.save();
    return grant;
  },
};

const b64 = (buf) => Buffer.from(buf).toString('base64url');

function resign(idToken, change, jwk) {
  const [, payload] = idToken.split('.');
  const claims = { ...JSON.parse(Buffer.from(payload, 'base64url').toString()), ...change };
  const head = b64(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: jwk.kid }));
  const body = b64(JSON.stringify(claims));
  const key = crypto.createPrivateKey({ key: jwk, format: 'jwk' });
  const sig = crypto.sign('sha256', Buffer.from(`${head}.${body}`), key);
  return `${head}.${body}.${b64(sig)}`;
}

const provider = new Provider(ISSUER, configuration);
let tamper = null;
let previous = null;
provider.use(async (ctx, next) => {
  if (ctx.path === '/__test/tamper' && ctx.method === 'POST') {
    tamper = ctx.query.mode || null;
    ctx.body = { tamper };
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
    const issued = ctx.body.id_token;
    const now = Math.floor(Date.now() / 1000);
    if (tamper === 'aud') ctx.body.id_token = resign(issued, { aud: 'other-app' }, signing);
    if (tamper === 'expired') {
      ctx.body.id_token = resign(issued, { iat: now - 7200, exp: now - 3600 }, signing);
    }
    if (tamper === 'forged') ctx.body.id_token = resign(issued, { groups: ['admins'] }, outsider);
    if (tamper === 'replay' && previous) ctx.body.id_token = previous;
    if (tamper) console.log(`tampered ID token: ${tamper}`);
    tamper = null;
    previous = issued;
  }
});

provider.listen(PORT, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${ISSUER} (signing key ${KID})`);
});
