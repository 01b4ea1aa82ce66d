import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { gzipSync } from 'node:zlib';
import { BpfdError } from '../../src/base/errors.js';
import { credentialFor, credentialFromFiles, Credential, parseRegistryAuth } from '../../src/oci/auth.js';
import { buildImage, tarOneFile } from '../../src/oci/build.js';
import { parseChallenge, RegistryClient } from '../../src/oci/client.js';
import { keySetId, signatureTag, trustedKeys, verifySignatures } from '../../src/oci/cosign.js';
import { checkListed, parseLabels } from '../../src/oci/labels.js';
import { objectFromLayer, tarEntries } from '../../src/oci/layer.js';
import { parseReference } from '../../src/oci/reference.js';
import { readVerified, sha256Digest } from '../../src/oci/verified.js';

const fixture = (n: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'fixtures', 'bytecode', n);
const object = () => readFileSync(fixture('xdp_drop.o'));
const kindOf = (e: unknown) => (e instanceof BpfdError ? e.kind : 'not a BpfdError');

test('references: registry, repository, tag and digest, with Docker Hub defaults', () => {
  const d = `sha256:${'a'.repeat(64)}`;
  assert.deepEqual(parseReference('quay.io/org/prog:v1'), { registry: 'quay.io', repository: 'org/prog', tag: 'v1', digest: null, canonical: 'quay.io/org/prog:v1' });
  assert.equal(parseReference(`127.0.0.1:5000/net/x@${d}`).digest, d);
  assert.equal(parseReference(`127.0.0.1:5000/net/x@${d}`).tag, null);
  assert.equal(parseReference('localhost/x').registry, 'localhost');
  assert.equal(parseReference('prog').canonical, 'docker.io/library/prog:latest');
  assert.equal(parseReference('org/prog').canonical, 'docker.io/org/prog:latest');
  for (const bad of ['', 'Quay.io/UPPER:v1', 'x@sha256:12', 'x:bad tag', 'reg.io/:v1']) {
    assert.throws(() => parseReference(bad), (e) => kindOf(e) === 'invalid', bad);
  }
});

test('layers: gzip tar, plain tar, raw and gzip ELF give the object; the first BPF .o wins', () => {
  const obj = object();
  for (const layer of [gzipSync(tarOneFile('prog.o', obj)), tarOneFile('prog.o', obj), obj, gzipSync(obj)]) {
    assert.deepEqual(objectFromLayer(layer).object, obj);
  }
  const two = Buffer.concat([tarOneFile('notes.o', Buffer.from('not elf')).subarray(0, 1024), tarOneFile('b.o', obj)]);
  const got = objectFromLayer(two);
  assert.equal(got.entry, 'b.o');
});

/** A one-entry tar with a given type flag, name and link name (checksummed). */
function tarEntry(name: string, type: string, linkname = ''): Buffer {
  const t = tarOneFile('x', Buffer.alloc(0));
  const h = t.subarray(0, 512);
  h.fill(0, 0, 100);
  h.write(name, 0);
  h.write(type, 156);
  h.write(linkname, 157);
  h.write('        ', 148);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return t;
}

test('layers: links, devices, FIFOs, ../ paths and zstd are refused; a layer without an object says what it holds', () => {
  const refuse = (layer: Buffer, why: RegExp) => assert.throws(() => objectFromLayer(layer), (e) => kindOf(e) === 'invalid' && why.test((e as Error).message));
  refuse(tarEntry('a.o', '2', '/etc/shadow'), /symbolic link \(to '\/etc\/shadow'\)/);
  refuse(tarEntry('a.o', '1', 'b.o'), /hard link/);
  refuse(tarEntry('dev', '3'), /character device/);
  refuse(tarEntry('dev', '4'), /block device/);
  refuse(tarEntry('fifo', '6'), /FIFO/);
  refuse(tarOneFile('../../etc/x.o', object()), /'\.\.' in its path/);
  refuse(tarOneFile('a/../../x.o', object()), /'\.\.' in its path/);
  refuse(Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(64)]), /zstd/);
  refuse(tarOneFile('README', Buffer.from('hi')), /no BPF object.*|files in the layer/);
  refuse(Buffer.from('just text, not a layer'), /neither a tar/);
  const x86 = Buffer.from(object());
  x86.writeUInt16LE(62, 18);
  refuse(x86, /machine 62, not BPF/);
});

test('layers: over the cap, and a gzip bomb, are refused as limits', () => {
  assert.throws(() => objectFromLayer(Buffer.alloc(17 * 1024 * 1024)), (e) => kindOf(e) === 'limit');
  const bomb = gzipSync(Buffer.alloc(40 * 1024 * 1024));
  assert.throws(() => objectFromLayer(bomb), (e) => kindOf(e) === 'limit');
});

test('layers: random damage to a tar never escapes as anything but a BpfdError', () => {
  const base = gzipSync(tarOneFile('prog.o', object()));
  const plain = tarOneFile('prog.o', object());
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
  for (let i = 0; i < 400; i++) {
    const b = Buffer.from(i % 2 ? base : plain);
    for (let k = 0; k < 1 + (rnd() % 8); k++) b[rnd() % b.length] = rnd() & 0xff;
    try {
      objectFromLayer(b.subarray(0, b.length - (rnd() % 64)));
    } catch (e) {
      assert.ok(e instanceof BpfdError, `case ${i}: ${(e as Error).message}`);
    }
  }
  assert.equal(tarEntries(plain).length, 1);
});

test('labels: io.ebpf.programs and maps, the older single-program labels, and a function they do not list', () => {
  const cfg = (labels: Record<string, string>) => Buffer.from(JSON.stringify({ config: { Labels: labels } }));
  const l = parseLabels(cfg({ 'io.ebpf.programs': '{"xdp_drop":"xdp"}', 'io.ebpf.maps': '{"stats":"array"}' }));
  assert.deepEqual(l.programs, { xdp_drop: 'xdp' });
  assert.deepEqual(l.maps, { stats: 'array' });
  const old = parseLabels(cfg({ 'io.ebpf.program_type': 'xdp', 'io.ebpf.filename': 'pass.o', 'io.ebpf.bpf_function_name': 'pass' }));
  assert.deepEqual(old.programs, { pass: 'xdp' });
  assert.equal(old.filename, 'pass.o');
  assert.throws(() => checkListed(l, 'other', 'r'), (e) => kindOf(e) === 'invalid' && /not one of the programs/.test((e as Error).message));
  assert.throws(() => parseLabels(cfg({ 'io.ebpf.programs': '[1]' })), (e) => kindOf(e) === 'invalid');
  assert.throws(() => parseLabels(cfg({ 'io.ebpf.programs': '{nope' })), (e) => kindOf(e) === 'invalid');
});

test('image build: the config carries the labels and the manifest names every blob by its digest', () => {
  const img = buildImage({ object: object(), filename: 'xdp_drop.o', programs: { xdp_drop: 'xdp' }, maps: {} });
  assert.equal(img.digest, sha256Digest(img.manifest));
  const m = JSON.parse(img.manifest.toString());
  assert.equal(m.config.digest, sha256Digest(img.config.bytes));
  assert.equal(m.layers[0].digest, sha256Digest(img.layer.bytes));
  assert.deepEqual(parseLabels(img.config.bytes).programs, { xdp_drop: 'xdp' });
  assert.deepEqual(objectFromLayer(img.layer.bytes).object, object());
  assert.equal(buildImage({ object: object(), filename: 'xdp_drop.o', programs: { xdp_drop: 'xdp' }, maps: {} }).digest, img.digest, 'reproducible');
});

test('streamed blobs: the right bytes pass; more, fewer or other bytes are refused', async () => {
  const data = Buffer.from('hello blob');
  const want = { digest: sha256Digest(data), size: data.length, max: 1024, what: 'blob' };
  assert.deepEqual(await readVerified(new Response(data), want), data);
  await assert.rejects(readVerified(new Response(Buffer.from('hello blob!')), want), /more than the 10 bytes/);
  await assert.rejects(readVerified(new Response(Buffer.from('hello')), want), /sent 5 of 10 bytes \(truncated\)/);
  await assert.rejects(readVerified(new Response(Buffer.from('jello blob')), want), /hash to sha256:/);
  await assert.rejects(readVerified(new Response(data), { ...want, max: 4 }), (e) => kindOf(e) === 'limit');
});

test('credentials: base64 user:password, auth files by registry and repository prefix, and never the password in text', () => {
  const c = parseRegistryAuth(Buffer.from('bob:s3cret:with:colons').toString('base64'), '--registry-auth');
  assert.equal(c.username, 'bob');
  assert.equal(c.password, 's3cret:with:colons');
  for (const shown of [JSON.stringify(c), String(c), `${c}`, inspect(c)]) assert.ok(!shown.includes('s3cret'), shown);
  assert.throws(() => parseRegistryAuth('bm9jb2xvbg==', 'x'), (e) => kindOf(e) === 'invalid' && !(e as Error).message.includes('bm9jb2xvbg'));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-auth-'));
  const file = path.join(dir, 'auth.json');
  const b = (s: string) => Buffer.from(s).toString('base64');
  writeFileSync(file, JSON.stringify({ auths: { 'reg.example:5000': { auth: b('all:a') }, 'reg.example:5000/team': { auth: b('team:t') }, 'https://index.docker.io/v1/': { auth: b('hub:h') } } }));
  const env = { REGISTRY_AUTH_FILE: file, HOME: dir };
  assert.equal(credentialFromFiles('reg.example:5000', 'team/x', env)?.username, 'team');
  assert.equal(credentialFromFiles('reg.example:5000', 'other/x', env)?.username, 'all');
  assert.equal(credentialFromFiles('docker.io', 'library/x', env)?.username, 'hub');
  assert.equal(credentialFromFiles('elsewhere.example', 'x', env), null);
  assert.ok(c instanceof Credential);
});

test('challenges: Bearer and Basic parameters', () => {
  assert.deepEqual(parseChallenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"'), {
    scheme: 'bearer',
    params: { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:a/b:pull' },
  });
  assert.deepEqual(parseChallenge('Basic realm="x"'), { scheme: 'basic', params: { realm: 'x' } });
});

async function server(handler: http.RequestListener): Promise<{ url: string; close(): void }> {
  const s = http.createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(s.address() as { port: number }).port}`, close: () => s.close() };
}

test('a redirect to another host gets no Authorization header; the registry itself does', async () => {
  const seen: Array<string | undefined> = [];
  const other = await server((req, res) => {
    seen.push(req.headers.authorization);
    res.end('blob');
  });
  const reg = await server((req, res) => {
    if (!req.headers.authorization) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="t"' });
      return void res.end();
    }
    seen.push(`registry:${req.headers.authorization}`);
    res.writeHead(307, { location: `${other.url}/storage/blob` });
    res.end();
  });
  try {
    const host = new URL(reg.url).host;
    const c = new RegistryClient({ registry: host, repository: 'a/b', credential: new Credential('u', 'p', 'test'), timeoutMs: 5000 });
    const r = await c.request('blobs/sha256:00');
    assert.equal(await r.res.text(), 'blob');
    r.done();
    assert.deepEqual(seen, [`registry:Basic ${Buffer.from('u:p').toString('base64')}`, undefined]);
  } finally {
    reg.close();
    other.close();
  }
});

test('cosign: a P-256 signature over the simple-signing payload verifies against a trusted key, for its digest only', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-keys-'));
  const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  writeFileSync(path.join(dir, 'release.pub'), pair.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(path.join(dir, 'rsa.pub'), generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }));
  const { keys, skipped } = trustedKeys(dir);
  assert.deepEqual(keys.map((k) => k.name), ['release.pub']);
  assert.match(skipped[0], /rsa\.pub: not an ECDSA P-256 key/);
  const digest = `sha256:${'b'.repeat(64)}`;
  const payload = Buffer.from(JSON.stringify({ critical: { identity: { 'docker-reference': 'r/x' }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' }, optional: null }));
  const sig = { payload: payload.toString('base64'), signature: sign('sha256', payload, pair.privateKey).toString('base64') };
  assert.equal(verifySignatures([digest], [sig], keys).verified, true);
  assert.equal(verifySignatures([digest], [sig], keys).key, 'release.pub');
  assert.match(verifySignatures([`sha256:${'c'.repeat(64)}`], [sig], keys).reason!, /over another digest/);
  const tampered = { ...sig, payload: Buffer.from(payload.toString().replace('r/x', 'r/y')).toString('base64') };
  assert.equal(verifySignatures([digest], [tampered], keys).verified, false);
  assert.match(verifySignatures([digest], [], keys).reason!, /no cosign signature/);
  assert.notEqual(keySetId(keys), keySetId([]));
  assert.equal(signatureTag(digest), `sha256-${'b'.repeat(64)}.sig`);
});

test("a caller who is not root uses only the credentials it gave, never the process's own", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-creds-'));
  const file = path.join(dir, 'auth.json');
  writeFileSync(file, JSON.stringify({ auths: { 'reg.example:5000': { auth: Buffer.from('root-file:pw1').toString('base64') } } }));
  const env = { REGISTRY_AUTH_FILE: file, BPFD_REGISTRY_AUTH: Buffer.from('root-env:pw2').toString('base64'), HOME: dir };
  const mine = Buffer.from('carol:pw3').toString('base64');
  // root (the default): the variable, then the files
  assert.equal(credentialFor('reg.example:5000', 'net/x', undefined, env)?.username, 'root-env');
  assert.equal(credentialFor('reg.example:5000', 'net/x', undefined, { ...env, BPFD_REGISTRY_AUTH: undefined })?.username, 'root-file');
  // another caller: what the request carries, or nothing at all
  assert.equal(credentialFor('reg.example:5000', 'net/x', undefined, env, true), null);
  assert.equal(credentialFor('reg.example:5000', 'net/x', mine, env, true)?.username, 'carol');
});
