import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { pushWithSkopeo } from '../helpers/oci-images.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

const skip = needsRoot();
const COSIGN = [path.join(os.homedir(), 'go', 'bin', 'cosign'), 'cosign'].find((c) => spawnSync(c, ['version']).status === 0);

function cosign(...args: string[]): void {
  if (!COSIGN) throw new Error('cosign is not installed: run scripts/setup.sh (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.4.1)');
  const r = spawnSync(COSIGN, args, { encoding: 'utf8', env: { ...process.env, COSIGN_PASSWORD: '' }, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`cosign ${args.join(' ')}: ${r.stderr}`);
}

describe('cosign signatures, verified offline against the administrator\'s keys, decided by policy', { skip }, () => {
  let reg: Registry;
  let env: Env;
  let net: VethPair;
  let keys: string;
  let work: string;
  before(async () => {
    reg = await startRegistry();
    env = makeEnv();
    net = makeVethPair();
    work = path.join(env.dir, 'cosign');
    keys = path.join(env.dir, 'keys');
    mkdirSync(work, { recursive: true });
    mkdirSync(keys, { recursive: true });
    for (const name of ['allowed', 'other']) cosign('generate-key-pair', '--output-key-prefix', path.join(work, name));
    copyFileSync(path.join(work, 'allowed.pub'), path.join(keys, 'allowed.pub'));
    env.env.BPFD_KEYS_DIR = keys;
    // images under signed/ must carry a signature by allowed.pub; others need none
    writeFileSync(env.env.BPFD_POLICY_DATA!, JSON.stringify({ signatures: [{ repositories: ['signed/*'], keys: ['allowed.pub'] }] }));
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
    reg?.stop();
  });
  const attach = () => ['--iface', net.ifB, '--netns', net.nsPathB];
  const sign = (key: string, ref: string) => cosign('sign', '--key', path.join(work, `${key}.key`), '--tlog-upload=false', '--allow-http-registry', '--yes', ref);

  test('an image signed by an allowed key loads, and its signature shows in images', () => {
    const pushed = pushWithSkopeo(`${reg.host}/signed/drop:v1`, { object: fixture('xdp_drop.o'), uniqueFile: 'signed-v1.txt' });
    sign('allowed', `${reg.host}/signed/drop@${pushed.digest}`);
    const r = env.run('load', 'image', '--image-url', `${reg.host}/signed/drop:v1`, '--name', 'xdp_drop', ...attach(), '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(net.ping(), false, 'the signed drop program runs');
    const img = env.run('images', '-o', 'json').json().find((i: any) => i.digest === pushed.digest);
    assert.equal(img.signature.verified, true);
    assert.equal(img.signature.key, 'allowed.pub');
    assert.match(img.signature.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(env.run('unload', String(r.json().id)).status, 0);
  });

  test('an unsigned image, and one signed by another key, are denied where the data requires a signature', () => {
    const unsigned = `${reg.host}/signed/drop:unsigned`;
    pushWithSkopeo(unsigned, { object: fixture('xdp_drop.o'), uniqueFile: 'unsigned.txt' });
    const u = env.run('load', 'image', '--image-url', unsigned, '--name', 'xdp_drop', ...attach());
    assert.equal(u.status, 3, u.stderr);
    assert.match(u.stderr, /must be signed by allowed\.pub: the image has no cosign signature/);

    const other = `${reg.host}/signed/drop:other`;
    const pushed = pushWithSkopeo(other, { object: fixture('xdp_drop.o'), uniqueFile: 'other.txt' });
    sign('other', `${reg.host}/signed/drop@${pushed.digest}`);
    const o = env.run('load', 'image', '--image-url', other, '--name', 'xdp_drop', ...attach());
    assert.equal(o.status, 3, o.stderr);
    assert.match(o.stderr, /must be signed by allowed\.pub: no signature is by a trusted key/);
    assert.deepEqual(env.run('list', '-o', 'json').json(), [], 'nothing was loaded');
    assert.ok(net.ping(), 'nothing attached');

    // outside signed/ no signature is needed
    pushWithSkopeo(`${reg.host}/plain/drop:v1`, { object: fixture('xdp_drop.o'), uniqueFile: 'plain.txt' });
    const p = env.run('load', 'image', '--image-url', `${reg.host}/plain/drop:v1`, '--name', 'xdp_drop', ...attach(), '-o', 'json');
    assert.equal(p.status, 0, p.stderr);
    assert.equal(env.run('unload', String(p.json().id)).status, 0);
  });

  test('a signature over another digest (copied next to this image) is refused', () => {
    const a = pushWithSkopeo(`${reg.host}/signed/copy:a`, { object: fixture('xdp_drop.o'), uniqueFile: 'copy-a.txt' });
    const b = pushWithSkopeo(`${reg.host}/signed/copy:b`, { object: fixture('xdp_drop.o'), uniqueFile: 'copy-b.txt' });
    sign('allowed', `${reg.host}/signed/copy@${a.digest}`);
    const tag = (d: string) => `${d.replace(':', '-')}.sig`;
    const c = spawnSync('skopeo', ['copy', '--quiet', '--preserve-digests', '--src-tls-verify=false', '--dest-tls-verify=false', `docker://${reg.host}/signed/copy:${tag(a.digest)}`, `docker://${reg.host}/signed/copy:${tag(b.digest)}`], { encoding: 'utf8' });
    assert.equal(c.status, 0, c.stderr);
    const r = env.run('load', 'image', '--image-url', `${reg.host}/signed/copy:b`, '--name', 'xdp_drop', ...attach());
    assert.equal(r.status, 3, r.stderr);
    assert.ok(r.stderr.includes(`the signature by a trusted key is over another digest (${a.digest})`), r.stderr);
    const ok = env.run('load', 'image', '--image-url', `${reg.host}/signed/copy:a`, '--name', 'xdp_drop', ...attach(), '-o', 'json');
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(env.run('unload', String(ok.json().id)).status, 0);
  });

  test('the cached result is checked again when the key set changes, without the registry', () => {
    const ref = `${reg.host}/signed/drop:v1`;
    // other.pub becomes the only trusted key: the cached signature by allowed.pub no longer counts
    const keys2 = path.join(env.dir, 'keys2');
    mkdirSync(keys2, { recursive: true });
    copyFileSync(path.join(work, 'other.pub'), path.join(keys2, 'other.pub'));
    env.env.BPFD_KEYS_DIR = keys2;
    reg.pause();
    try {
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach());
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr, /no signature is by a trusted key/);
      env.env.BPFD_KEYS_DIR = keys;
      const back = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach(), '-o', 'json');
      assert.equal(back.status, 0, back.stderr);
      assert.equal(net.ping(), false);
      assert.equal(env.run('unload', String(back.json().id)).status, 0);
    } finally {
      reg.resume();
      env.env.BPFD_KEYS_DIR = keys;
    }
  });
});
