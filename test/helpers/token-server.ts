// A small bearer-token service for the tests' docker-registry (run as its own process by
// registry.ts): checks basic credentials and answers with an ES256 JWT the registry trusts
// through its rootcertbundle (the signing certificate rides in the x5c header).
import { createPrivateKey, randomUUID, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

const [port, keyFile, certFile, issuer, service, user, password] = process.argv.slice(2);
const key = createPrivateKey(readFileSync(keyFile));
const certDer = Buffer.from(readFileSync(certFile, 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64').toString('base64');
const b64url = (b: Buffer | string) => Buffer.from(b).toString('base64url');

http
  .createServer((req, res) => {
    const url = new URL(req.url ?? '/', `http://127.0.0.1:${port}`);
    if (url.pathname === '/health') return void res.end('ok');
    const given = req.headers.authorization?.startsWith('Basic ') ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString() : null;
    if (given !== `${user}:${password}`) {
      res.statusCode = 401;
      return void res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
    }
    const access = url.searchParams.getAll('scope').map((s) => {
      const [type, name, actions] = s.split(':');
      return { type, name, actions: actions.split(',') };
    });
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: 'ES256', typ: 'JWT', x5c: [certDer] }));
    const claims = b64url(JSON.stringify({ iss: issuer, sub: user, aud: url.searchParams.get('service') ?? service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access }));
    const sig = sign('sha256', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ token: `${header}.${claims}.${b64url(sig)}`, expires_in: 300 }));
  })
  .listen(Number(port), '127.0.0.1');
