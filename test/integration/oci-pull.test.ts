import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BPFD, fixture, makeEnv, needsRoot, progGone, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { pushWithSkopeo } from '../helpers/oci-images.js';
import { startRegistry, type Registry } from '../helpers/registry.js';
import { simulateReboot } from '../helpers/reboot.js';

const skip = needsRoot();

/** Files in the env's image cache: a refused pull must leave none behind. */
function cachedBlobs(env: Env): string[] {
  const dir = path.join(env.env.BPFD_STATE_DIR!, 'oci', 'blobs', 'sha256');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

describe('load image from a registry without auth (docker-registry, images pushed by skopeo)', { skip }, () => {
  let reg: Registry;
  let env: Env;
  let net: VethPair;
  before(async () => {
    reg = await startRegistry();
    env = makeEnv({ BPFD_REGISTRY_TIMEOUT: '3', BPFD_KEYS_DIR: '/nonexistent' });
    net = makeVethPair();
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
    reg?.stop();
  });

  const attach = () => ['--iface', net.ifB, '--netns', net.nsPathB];

  test('pull by tag caches it with its labels; load image --pull-policy Never runs it (pings drop)', () => {
    const pushed = pushWithSkopeo(`${reg.host}/net/drop:v1`, { object: fixture('xdp_drop.o') });
    const p = env.run('pull', `${reg.host}/net/drop:v1`, '-o', 'json');
    assert.equal(p.status, 0, p.stderr);
    const img = p.json();
    assert.equal(img.digest, pushed.digest);
    assert.deepEqual(img.programs, { xdp_drop: 'xdp' });
    assert.deepEqual(img.references, [`${reg.host}/net/drop:v1`]);
    assert.equal(img.signature.verified, false);
    const list = env.run('images', '-o', 'json').json();
    assert.deepEqual(list.map((i: any) => i.digest), [pushed.digest]);
    assert.ok(net.ping(), 'ping works before the load');
    const r = env.run('load', 'image', '--image-url', `${reg.host}/net/drop:v1`, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach(), '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const prog = r.json();
    assert.deepEqual(prog.bytecode, { image: `${reg.host}/net/drop:v1`, digest: pushed.digest });
    assert.equal(net.ping(), false, 'xdp_drop from the image drops pings');
    const got = env.run('get', String(prog.id), '-o', 'json').json();
    assert.deepEqual(got.bytecode, { image: `${reg.host}/net/drop:v1`, digest: pushed.digest });
    assert.deepEqual(env.run('list', '-o', 'json').json()[0].bytecode, prog.bytecode);
    assert.equal(env.run('unload', String(prog.id)).status, 0);
    assert.ok(net.ping(), 'pings pass after unload');
  });

  test('load image by digest, and from an index that holds arm64 and amd64 (the amd64 manifest is loaded)', () => {
    const pushed = pushWithSkopeo(`${reg.host}/net/count:multi`, { object: fixture('xdp_count.o'), index: true, layer: 'tar' });
    assert.ok(pushed.indexDigest);
    for (const ref of [`${reg.host}/net/count:multi`, `${reg.host}/net/count@${pushed.indexDigest}`, `${reg.host}/net/count@${pushed.digest}`]) {
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_count', '--pull-policy', 'Always', ...attach(), '-o', 'json');
      assert.equal(r.status, 0, `${ref}: ${r.stderr}`);
      const prog = r.json();
      assert.equal(prog.bytecode.digest, pushed.digest, `${ref} loads the amd64 manifest`);
      assert.ok(net.ping(3), 'the counting program passes pings');
      const stats = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', `${env.bpffs}/maps/${prog.id}/xdp_stats`], { encoding: 'utf8' }));
      assert.ok(stats[0].formatted.value.packets >= 3, 'the program from the image counted the pings');
      assert.equal(env.run('unload', String(prog.id)).status, 0);
    }
  });

  test('each layer form loads: plain tar, raw ELF, gzip ELF', () => {
    for (const layer of ['tar', 'elf', 'elf.gz'] as const) {
      pushWithSkopeo(`${reg.host}/net/forms:${layer.replace('.', '-')}`, { object: fixture('xdp_drop.o'), layer });
      const r = env.run('load', 'image', '--image-url', `${reg.host}/net/forms:${layer.replace('.', '-')}`, '--name', 'xdp_drop', ...attach(), '-o', 'json');
      assert.equal(r.status, 0, `${layer}: ${r.stderr}`);
      assert.equal(net.ping(), false, `${layer}: drops`);
      assert.equal(env.run('unload', String(r.json().id)).status, 0);
    }
  });

  test('pull policies: Never without a cached copy fails; a moved tag is picked up by IfNotPresent, not by Never', () => {
    const ref = `${reg.host}/net/moving:stable`;
    const never = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach());
    assert.equal(never.status, 4, never.stderr);
    assert.match(never.stderr, /not in the cache and --pull-policy is Never/);
    const first = pushWithSkopeo(ref, { object: fixture('xdp_drop.o') });
    const a = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', ...attach(), '-o', 'json');
    assert.equal(a.status, 0, a.stderr);
    assert.equal(a.json().bytecode.digest, first.digest);
    assert.equal(net.ping(), false);
    assert.equal(env.run('unload', String(a.json().id)).status, 0);

    // the tag now names an image of xdp_pass, with the function name of the first
    const second = pushWithSkopeo(ref, { object: fixture('xdp_pass.o'), program: 'xdp_pass' });
    assert.notEqual(second.digest, first.digest);
    const b = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach(), '-o', 'json');
    assert.equal(b.status, 0, b.stderr);
    assert.equal(b.json().bytecode.digest, first.digest, 'Never keeps the cached digest');
    assert.equal(net.ping(), false, 'still the drop program');
    assert.equal(env.run('unload', String(b.json().id)).status, 0);

    const c = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_pass', '--pull-policy', 'IfNotPresent', ...attach(), '-o', 'json');
    assert.equal(c.status, 0, c.stderr);
    assert.equal(c.json().bytecode.digest, second.digest, 'IfNotPresent sees the tag moved');
    assert.ok(net.ping(), 'the pass program passes');
    assert.equal(env.run('unload', String(c.json().id)).status, 0);

    const unlisted = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach());
    assert.equal(unlisted.status, 2, unlisted.stderr);
    assert.match(unlisted.stderr, /function xdp_drop is not one of the programs image .* lists/);
  });

  test('a pull makes its blobs durable before the record naming them: the cache directory is fsynced after the renames, before the index commit', () => {
    pushWithSkopeo(`${reg.host}/net/durable:v1`, { object: fixture('xdp_pass.o'), uniqueFile: 'durable.bin' });
    const trace = path.join(env.dir, 'pull.strace');
    const r = spawnSync('strace', ['-f', '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2', '-o', trace, BPFD, 'pull', `${reg.host}/net/durable:v1`], { env: env.env, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const lines = readFileSync(trace, 'utf8').split('\n');
    const blobs = path.join(env.env.BPFD_STATE_DIR!, 'oci', 'blobs', 'sha256');
    let lastRename = -1;
    lines.forEach((l, i) => {
      if (/rename/.test(l) && l.includes(blobs)) lastRename = i;
    });
    assert.ok(lastRename >= 0, 'the blobs were renamed into place');
    // the directory opened after the renames, fsynced, and only then the store's commit
    const opened = lines.findIndex((l, i) => i > lastRename && l.includes(`openat(AT_FDCWD, "${blobs}"`));
    assert.ok(opened > lastRename, `the cache directory is opened after the renames:\n${lines.slice(lastRename, lastRename + 8).join('\n')}`);
    const fd = /= (\d+)$/.exec(lines[opened].trim())?.[1];
    const synced = lines.findIndex((l, i) => i > opened && new RegExp(`fsync\\(${fd}\\)`).test(l));
    assert.ok(synced > opened, 'and fsynced');
    const commit = lines.findIndex((l, i) => i > lastRename && /fdatasync\(/.test(l));
    assert.ok(commit > synced, 'before the index commit syncs the store');
  });

  test('a blob whose bytes do not match its digest, and a truncated one: refused, nothing cached, nothing loaded', () => {
    for (const damage of ['flipped', 'truncated'] as const) {
      const ref = `${reg.host}/net/bad-${damage}:v1`;
      const pushed = pushWithSkopeo(ref, { object: fixture('xdp_drop.o'), uniqueFile: `damaged-${damage}.txt` });
      const file = reg.blobFile(pushed.layerDigest);
      const bytes = readFileSync(file);
      if (damage === 'flipped') {
        bytes[bytes.length - 10] ^= 0xff;
        writeFileSync(file, bytes);
      } else truncateSync(file, Math.floor(bytes.length / 2));
      const blobsBefore = cachedBlobs(env);
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', ...attach());
      assert.equal(r.status, 1, `${damage}: ${r.stderr}`);
      assert.match(r.stderr, damage === 'flipped' ? /hash to sha256:[0-9a-f]{64}, not the digest the manifest names; nothing was stored/ : /sent \d+ of \d+ bytes \(truncated\); nothing was stored/);
      assert.ok(r.stderr.includes(pushed.layerDigest), 'the error names the blob');
      assert.deepEqual(cachedBlobs(env), blobsBefore, 'no blob was cached');
      assert.ok(!env.run('images', '-o', 'json').json().some((i: any) => i.digest === pushed.digest), 'the image is not listed');
      assert.deepEqual(env.run('list', '-o', 'json').json(), [], 'nothing was loaded');
      assert.deepEqual(env.pins(), [], 'nothing pinned');
      assert.ok(net.ping(), 'pings pass');
    }
  });

  test('a pull killed half-way leaves nothing that looks cached, and the next pull sweeps what it left', () => {
    // pull:staging: its layer written under a temporary name; pull:after-blobs: its blobs moved
    // into place inside the index transaction, the index record not committed
    for (const hook of ['pull:staging', 'pull:after-blobs']) {
      const ref = `${reg.host}/net/killed-${hook.replace(':', '-')}:v1`;
      const pushed = pushWithSkopeo(ref, { object: fixture('xdp_drop.o'), uniqueFile: `killed-${hook}.txt` });
      const before = cachedBlobs(env);
      // the same store and cache as env, with the hook
      const killed = makeEnv({ ...env.env, BPFD_TEST_HOOK: `${hook}=kill` });
      try {
        const k = killed.run('pull', ref);
        assert.notEqual(k.status, 0, `${hook}: the pull was killed`);
      } finally {
        killed.cleanup();
      }
      const left = cachedBlobs(env).filter((b) => !before.includes(b));
      assert.ok(left.some((b) => b.startsWith(pushed.layerDigest.slice(7))), `${hook}: the killed pull left its layer behind (${left.join(', ')})`);
      if (hook === 'pull:staging') assert.ok(left.every((b) => /\.tmp-\d+-\d+$/.test(b)), `${hook}: only temporary files (${left.join(', ')})`);
      else assert.ok(left.some((b) => b === pushed.layerDigest.slice(7)), `${hook}: the layer is in place (${left.join(', ')})`);
      assert.ok(!env.run('images', '-o', 'json').json().some((i: any) => i.digest === pushed.digest), `${hook}: not listed`);
      const never = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach());
      assert.equal(never.status, 4, never.stderr);

      // another image's pull sweeps what no record names; what records name stays
      const other = pushWithSkopeo(`${reg.host}/net/after-kill:${hook.replace(':', '-')}`, { object: fixture('xdp_drop.o'), uniqueFile: `after-${hook}.txt` });
      const p = env.run('pull', `${reg.host}/net/after-kill:${hook.replace(':', '-')}`, '-o', 'json');
      assert.equal(p.status, 0, p.stderr);
      assert.equal(p.json().digest, other.digest);
      const now = cachedBlobs(env);
      assert.deepEqual(left.filter((b) => now.includes(b)), [], `${hook}: the leftovers were swept`);
      assert.ok(before.every((b) => now.includes(b)), `${hook}: the blobs of cached images stayed`);
      assert.ok(!env.run('images', '-o', 'json').json().some((i: any) => i.digest === pushed.digest), `${hook}: still not listed`);

      const again = env.run('pull', ref, '-o', 'json');
      assert.equal(again.status, 0, again.stderr);
      assert.equal(again.json().digest, pushed.digest);
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach(), '-o', 'json');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(net.ping(), false, `${hook}: the image pulled again runs`);
      assert.equal(env.run('unload', String(r.json().id)).status, 0);
    }
  });

  test('the sweep leaves a pull in progress alone: its staged layer stays and it completes', async () => {
    const ref = `${reg.host}/net/slow:v1`;
    const pushed = pushWithSkopeo(ref, { object: fixture('xdp_drop.o'), uniqueFile: 'slow.txt' });
    // paused after staging its layer, until the other pull has committed and swept
    const slow = spawn(BPFD, ['pull', ref, '-o', 'json'], { env: { ...env.env, BPFD_TEST_HOOK: 'pull:staging=sleep:4000' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    slow.stdout.on('data', (d) => (out += d));
    slow.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((resolve) => slow.on('exit', (code) => resolve(code)));
    const staged = () => cachedBlobs(env).filter((b) => b.startsWith(`${pushed.layerDigest.slice(7)}.tmp-${slow.pid}-`));
    for (let i = 0; i < 200 && staged().length === 0 && slow.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(staged().length, 1, `the slow pull staged its layer (${err})`);
    const other = `${reg.host}/net/meanwhile:v1`;
    pushWithSkopeo(other, { object: fixture('xdp_drop.o'), uniqueFile: 'meanwhile.txt' });
    const p = env.run('pull', other);
    assert.equal(p.status, 0, p.stderr);
    assert.equal(staged().length, 1, 'the sweep of the other pull kept the staged layer of the live one');
    assert.equal(await exited, 0, err);
    assert.equal(JSON.parse(out).digest, pushed.digest);
    const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach(), '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(net.ping(), false, 'the image of the slow pull runs');
    assert.equal(env.run('unload', String(r.json().id)).status, 0);
  });

  test('a layer over 16 MiB is refused, nothing cached; root raises the cap with BPFD_MAX_LAYER_BYTES, which must be a number', () => {
    const ref = `${reg.host}/net/large:v1`;
    const pushed = pushWithSkopeo(ref, { object: fixture('xdp_pass.o'), program: 'xdp_pass', uniqueFile: 'large.bin', padding: 17 << 20 });
    assert.ok(pushed.layerSize > 16 << 20);
    const blobsBefore = cachedBlobs(env);
    const r = env.run('pull', ref);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`layer ${pushed.layerDigest} of .* is ${pushed.layerSize} bytes, over the 16777216-byte limit`));
    assert.deepEqual(cachedBlobs(env), blobsBefore, 'nothing cached');
    assert.ok(!env.run('images', '-o', 'json').json().some((i: any) => i.digest === pushed.digest));
    const junk = makeEnv({ ...env.env, BPFD_MAX_LAYER_BYTES: '32M' });
    const raised = makeEnv({ ...env.env, BPFD_MAX_LAYER_BYTES: String(32 << 20) });
    try {
      const j = junk.run('pull', ref);
      assert.equal(j.status, 2, j.stderr);
      assert.match(j.stderr, /BPFD_MAX_LAYER_BYTES=32M is not a positive number of bytes/);
      const ok = raised.run('pull', ref, '-o', 'json');
      assert.equal(ok.status, 0, ok.stderr);
      assert.equal(ok.json().digest, pushed.digest);
    } finally {
      junk.cleanup();
      raised.cleanup();
    }
    const load = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_pass', '--pull-policy', 'Never', ...attach(), '-o', 'json');
    assert.equal(load.status, 0, `a cached large image loads without the variable: ${load.stderr}`);
    assert.equal(env.run('unload', String(load.json().id)).status, 0);
    assert.equal(env.run('images', 'rm', ref).status, 0);
  });

  test('a cached load reads the unpacked object; when that blob is damaged it unpacks the layer, and a damaged layer is refused', () => {
    const ref = `${reg.host}/net/unpacked:v1`;
    const pushed = pushWithSkopeo(ref, { object: fixture('xdp_drop.o'), uniqueFile: 'unpacked.txt' });
    assert.equal(env.run('pull', ref).status, 0);
    const blobs = path.join(env.env.BPFD_STATE_DIR!, 'oci', 'blobs', 'sha256');
    const objectBlob = path.join(blobs, createHash('sha256').update(readFileSync(fixture('xdp_drop.o'))).digest('hex'));
    assert.ok(existsSync(objectBlob), 'the object is cached as a blob of its own');
    writeFileSync(objectBlob, 'not the object');
    const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach(), '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(net.ping(), false, 'the object unpacked from the layer runs');
    assert.equal(env.run('unload', String(r.json().id)).status, 0);
    const layer = path.join(blobs, pushed.layerDigest.slice(7));
    const bytes = readFileSync(layer);
    bytes[bytes.length - 5] ^= 0xff;
    writeFileSync(layer, bytes);
    const bad = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach());
    assert.equal(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, new RegExp(`the cached layer ${pushed.layerDigest} of image ${pushed.digest} is damaged`));
    assert.deepEqual(env.run('list', '-o', 'json').json(), [], 'nothing loaded');
    assert.ok(net.ping());
    assert.equal(env.run('images', 'rm', ref).status, 0);
  });

  test('a tar with ../ entries, one with a symlink, and a zstd layer are refused with what was wrong', () => {
    const cases = [
      ['dotdot', /entry '\.\.\/\.\.\/xdp_drop\.o' with '\.\.' in its path; refused/],
      ['symlink', /entry 'a-link\.o' that is a symbolic link \(to '\/etc\/passwd'\); refused/],
      ['zstd', /zstd/],
    ] as const;
    for (const [layer, message] of cases) {
      const ref = `${reg.host}/net/hostile:${layer}`;
      pushWithSkopeo(ref, { object: fixture('xdp_drop.o'), layer });
      const before = cachedBlobs(env);
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', ...attach());
      assert.equal(r.status, 2, `${layer}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.deepEqual(cachedBlobs(env), before, `${layer}: nothing cached`);
      assert.ok(net.ping(), 'nothing attached');
    }
  });

  test('a registry that stops answering: the timeout names it; IfNotPresent falls back to the cached image', () => {
    const ref = `${reg.host}/net/drop:v1`;
    reg.pause();
    try {
      const p = env.run('pull', ref);
      assert.equal(p.status, 1, p.stderr);
      assert.match(p.stderr, new RegExp(`registry ${reg.host.replace(/\./g, '\\.')} did not answer within 3 s`));
      const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', ...attach(), '-o', 'json');
      assert.equal(r.status, 0, r.stderr);
      assert.equal(net.ping(), false);
      assert.equal(env.run('unload', String(r.json().id)).status, 0);
    } finally {
      reg.resume();
    }
  });

  test('images rm is refused while a program uses the image, and works after unload', () => {
    const ref = `${reg.host}/net/drop:v1`;
    const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', ...attach(), '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const { id, bytecode } = r.json();
    const rm = env.run('images', 'rm', ref);
    assert.equal(rm.status, 1, rm.stderr);
    assert.match(rm.stderr, new RegExp(`program ${id} \\(xdp_drop\\) is loaded from it: unload it first`));
    assert.ok(env.run('images', '-o', 'json').json().some((i: any) => i.digest === bytecode.digest), 'still cached');
    assert.equal(net.ping(), false, 'still running');
    assert.equal(env.run('unload', String(id)).status, 0);
    const rm2 = env.run('images', 'rm', bytecode.digest);
    assert.equal(rm2.status, 0, rm2.stderr);
    assert.ok(!env.run('images', '-o', 'json').json().some((i: any) => i.digest === bytecode.digest), 'gone from the list');
    const never = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--pull-policy', 'Never', ...attach());
    assert.equal(never.status, 4, never.stderr);
  });

  test('a pull the policy denies is refused and caches nothing; what it asked the registry meanwhile is stopped, even from one that never answers', async () => {
    // run as root in its own process, a pull asks the registry while the policy decides
    const ref = `${reg.host}/net/denied:v1`;
    pushWithSkopeo(ref, { object: fixture('xdp_drop.o'), uniqueFile: 'denied.txt' });
    // accepts connections and never answers: a request not stopped would wait out the hour below
    const silent = createServer(() => undefined);
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    const denied = makeEnv({ BPFD_KEYS_DIR: '/nonexistent', BPFD_REGISTRY_TIMEOUT: '3600' });
    try {
      writeFileSync(denied.env.BPFD_POLICY_DATA!, JSON.stringify({ root_allowed: false }));
      for (const target of [ref, `127.0.0.1:${port}/net/denied:v1`]) {
        const r = denied.run('pull', target);
        assert.equal(r.status, 3, `${target}: ${r.stderr}`);
        assert.match(r.stderr, /^bpfd: denied by policy\n {2}uid 0 \(root\)/, target);
      }
      assert.deepEqual(cachedBlobs(denied), [], 'nothing written to the cache');
      assert.deepEqual(denied.run('images', '-o', 'json').json(), []);
      const log = denied.run('policy', 'log', '-o', 'json').json() as Array<{ action: string; allow: boolean }>;
      assert.deepEqual(log.filter((d) => d.action === 'pull').map((d) => d.allow), [false, false], 'both decisions logged');
    } finally {
      denied.cleanup();
      silent.close();
    }
  });

  test('--persist restores from the cached image after a reboot, with the registry stopped', () => {
    const ref = `${reg.host}/net/drop:v1`;
    const r = env.run('load', 'image', '--image-url', ref, '--name', 'xdp_drop', '--persist', ...attach(), '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const { id, bytecode } = r.json();
    assert.equal(net.ping(), false);
    simulateReboot(env, [id]);
    assert.ok(progGone(id));
    assert.ok(net.ping(), 'after the reboot nothing is attached');
    reg.stop();
    const restore = env.run('system', 'restore', '-o', 'json');
    assert.equal(restore.status, 0, restore.stderr + restore.stdout);
    const back = env.run('list', '-o', 'json').json();
    assert.equal(back.length, 1);
    assert.deepEqual(back[0].bytecode, bytecode);
    assert.equal(net.ping(), false, 'the restored program drops again');
    assert.equal(env.run('unload', String(back[0].id)).status, 0);
  });
});
