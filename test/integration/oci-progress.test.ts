import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { BPFD, fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { pushWithSkopeo } from '../helpers/oci-images.js';
import { startRegistry, type Registry } from '../helpers/registry.js';

const skip = needsRoot();

/** Runs bpfd on a pseudo-terminal (util-linux script): what a user at a terminal sees, stdout and stderr together. */
function onTerminal(env: Env, ...args: string[]): { status: number | null; screen: string } {
  const quoted = [BPFD, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = spawnSync('script', ['-qfec', quoted, '/dev/null'], { env: env.env, encoding: 'utf8' });
  return { status: r.status, screen: r.stdout };
}

describe('pull shows progress on a terminal for large blobs, and stays quiet otherwise', { skip }, () => {
  let reg: Registry;
  let env: Env;
  before(async () => {
    reg = await startRegistry();
    env = makeEnv({ BPFD_KEYS_DIR: '/nonexistent' });
  });
  after(() => {
    env?.cleanup();
    reg?.stop();
  });

  test('a 3 MiB layer on a terminal: a progress bar that ends full, then the image', () => {
    const ref = `${reg.host}/net/big:v1`;
    const pushed = pushWithSkopeo(ref, { object: fixture('xdp_pass.o'), program: 'xdp_pass', uniqueFile: 'padding.bin', padding: 3 << 20 });
    assert.ok(pushed.layerSize > 1 << 20, `the layer is over 1 MiB (${pushed.layerSize} bytes)`);
    const r = onTerminal(env, 'pull', ref);
    assert.equal(r.status, 0, r.screen);
    const bars = r.screen.match(/layer [0-9a-f]{12} \[[# ]{30}\] [0-9.]+ (?:KiB|MiB|B)\/[0-9.]+ MiB/g) ?? [];
    assert.ok(bars.length >= 1, `a progress line is shown:\n${JSON.stringify(r.screen)}`);
    assert.ok(r.screen.includes(`layer ${pushed.layerDigest.slice(7, 19)} [`), 'it names the layer by its digest');
    assert.match(bars[bars.length - 1], /\[#{30}\] ([0-9.]+ MiB)\/\1/, 'the last one is full');
    assert.ok(r.screen.indexOf('Digest:') > r.screen.lastIndexOf('['), 'the image detail follows the bar');
    assert.ok(r.screen.includes(pushed.digest));
  });

  test('the same pull without a terminal, and a small layer on a terminal: no progress at all', () => {
    const big = `${reg.host}/net/big-quiet:v1`;
    pushWithSkopeo(big, { object: fixture('xdp_pass.o'), program: 'xdp_pass', uniqueFile: 'padding-quiet.bin', padding: 3 << 20 });
    const piped = env.run('pull', big);
    assert.equal(piped.status, 0, piped.stderr);
    assert.equal(piped.stderr, '', 'nothing on stderr when it is not a terminal');
    assert.ok(!piped.stdout.includes('['), 'no bar on stdout either');

    const small = `${reg.host}/net/small:v1`;
    const pushed = pushWithSkopeo(small, { object: fixture('xdp_pass.o'), program: 'xdp_pass' });
    assert.ok(pushed.layerSize < 1 << 20);
    const r = onTerminal(env, 'pull', small);
    assert.equal(r.status, 0, r.screen);
    assert.ok(r.screen.includes(pushed.digest), r.screen);
    assert.ok(!/\[[# ]{30}\]/.test(r.screen) && !r.screen.includes('\r\u001b') && !/layer [0-9a-f]{12} \[/.test(r.screen), `no progress for a small layer:\n${JSON.stringify(r.screen)}`);
  });
});
