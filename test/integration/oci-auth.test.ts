import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { pushWithSkopeo } from '../helpers/oci-images.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

const skip = needsRoot();
const USER = 'alice';
const PASSWORD = 'correct-horse-battery';
const WRONG = 'wrong-staple-9137';
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Every byte bpfd keeps in its store and cache, to prove no password is in it. */
function storeBytes(env: Env): Buffer {
  const out: Buffer[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(readFileSync(p));
    }
  };
  walk(env.env.BPFD_STATE_DIR!);
  return Buffer.concat(out);
}

for (const kind of ['basic', 'bearer'] as const) {
  describe(`load image from a registry with ${kind} auth`, { skip }, () => {
    let reg: Registry;
    let env: Env;
    let net: VethPair;
    let ref: string;
    before(async () => {
      reg = await startRegistry({ kind, user: USER, password: PASSWORD });
      // HOME and XDG_RUNTIME_DIR of its own: no credentials file of the machine is read
      env = makeEnv({ BPFD_KEYS_DIR: '/nonexistent', XDG_RUNTIME_DIR: '', REGISTRY_AUTH_FILE: '', DOCKER_CONFIG: '', BPFD_REGISTRY_AUTH: '' });
      env.env.HOME = path.join(env.dir, 'home');
      mkdirSync(env.env.HOME, { recursive: true });
      net = makeVethPair();
      ref = `${reg.host}/team/drop:v1`;
      pushWithSkopeo(ref, { object: fixture('xdp_drop.o'), creds: `${USER}:${PASSWORD}` });
    });
    after(() => {
      env?.cleanup();
      net?.cleanup();
      reg?.stop();
    });
    const attach = () => ['--iface', net.ifB, '--netns', net.nsPathB];

    test('without credentials the registry refuses, and bpfd says how to give them', () => {
      const r = env.run('pull', ref);
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr, kind === 'basic' ? /needs credentials for team\/drop/ : /token service refused an anonymous token/);
      assert.match(r.stderr, /--registry-auth/);
    });

    test('a wrong password is refused, and the password appears nowhere', () => {
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--registry-auth', b64(`${USER}:${WRONG}`), ...attach());
      assert.equal(r.status, 3, r.stderr);
      assert.match(r.stderr, /refused the credentials of alice \(from --registry-auth\)/);
      assert.ok(!r.stderr.includes(WRONG) && !r.stdout.includes(WRONG), 'the password is not in the output');
      assert.ok(!r.stderr.includes(b64(`${USER}:${WRONG}`)), 'nor its base64');
      assert.deepEqual(env.run('list', '-o', 'json').json(), []);
    });

    test('--registry-auth with the right password loads, and the program runs', () => {
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--registry-auth', b64(`${USER}:${PASSWORD}`), '--pull-policy', 'Always', ...attach(), '-o', 'json');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(net.ping(), false, 'the drop program from the private image drops');
      assert.equal(env.run('unload', String(r.json().id)).status, 0);
      assert.ok(net.ping());
      const all = storeBytes(env);
      assert.ok(!all.includes(PASSWORD) && !all.includes(b64(`${USER}:${PASSWORD}`)), 'no password in the store or cache');
    });

    test('credentials files: REGISTRY_AUTH_FILE (containers auth.json), then DOCKER_CONFIG, and BPFD_REGISTRY_AUTH', () => {
      const authFile = path.join(env.dir, 'auth.json');
      writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: b64(`${USER}:${PASSWORD}`) } } }));
      const dockerDir = path.join(env.dir, 'docker');
      mkdirSync(dockerDir, { recursive: true });
      writeFileSync(path.join(dockerDir, 'config.json'), JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: b64(`${USER}:${PASSWORD}`) } } }));
      const cases: Array<[string, Record<string, string>]> = [
        ['REGISTRY_AUTH_FILE', { REGISTRY_AUTH_FILE: authFile }],
        ['DOCKER_CONFIG', { DOCKER_CONFIG: dockerDir }],
        ['BPFD_REGISTRY_AUTH', { BPFD_REGISTRY_AUTH: b64(`${USER}:${PASSWORD}`) }],
      ];
      for (const [name, vars] of cases) {
        Object.assign(env.env, vars);
        try {
          const r = env.run('pull', ref, '-o', 'json');
          assert.equal(r.status, 0, `${name}: ${r.stderr}`);
        } finally {
          for (const k of Object.keys(vars)) env.env[k] = '';
        }
      }
      // the first file that exists wins: a wrong password there is used, not the right one after it
      writeFileSync(authFile, JSON.stringify({ auths: { [reg.host]: { auth: b64(`${USER}:${WRONG}`) } } }));
      Object.assign(env.env, { REGISTRY_AUTH_FILE: authFile, DOCKER_CONFIG: dockerDir });
      try {
        const r = env.run('pull', ref);
        assert.equal(r.status, 3, r.stderr);
        assert.ok(r.stderr.includes(`from ${authFile}`), r.stderr);
        assert.ok(!r.stderr.includes(WRONG));
      } finally {
        env.env.REGISTRY_AUTH_FILE = '';
        env.env.DOCKER_CONFIG = '';
      }
    });

    test('bpfd image build --push makes an image bpfd then loads from the registry', () => {
      const tag = `${reg.host}/team/built:v1`;
      const auth = b64(`${USER}:${PASSWORD}`);
      const b = env.run('image', 'build', '--tag', tag, fixture('xdp_count.o'), '--push', '--registry-auth', auth, '-o', 'json');
      assert.equal(b.status, 0, b.stderr);
      assert.deepEqual(b.json().programs, { xdp_count: 'xdp' });
      assert.ok('xdp_stats' in b.json().maps, JSON.stringify(b.json().maps));
      assert.equal(env.run('images', 'rm', tag).status, 0, 'forget the local copy: the load must come from the registry');
      const r = env.run('load', 'image', '--image-url', tag, '--name', 'xdp_count', '--registry-auth', auth, ...attach(), '-o', 'json');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.json().bytecode.digest, b.json().digest);
      assert.ok(net.ping(3), 'xdp_count passes pings');
      assert.equal(env.run('unload', String(r.json().id)).status, 0);
    });
  });
}
