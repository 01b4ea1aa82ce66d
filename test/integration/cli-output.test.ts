import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { BPFD, fixture, makeEnv, needsRoot, type Env } from '../helpers/bpfd.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { simulateReboot } from '../helpers/reboot.js';

// bpfd writes its answer straight to fd 1 (src/cli/output.ts). A reader that has gone away
// (`bpfd list | head -1` once head has what it wants) must not turn into an error or a crash.
test('a reader that closed the pipe early gets no error: bpfd exits 0 and says nothing', () => {
  // `true` exits at once; bpfd starts writing after it is gone, so its write meets EPIPE
  const r = spawnSync('bash', ['-c', `set -o pipefail; (sleep 0.3; "${BPFD}" version -o json) | true`], { encoding: 'utf8' });
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  assert.equal(r.stderr, '');
});

/**
 * Links carry a `kind` (only "xdp" so far) beside the fields of that kind. The JSON keeps every
 * field it had before (scripts parse them) and adds `kind`; the tables show it in a KIND column.
 */
describe('every link says its kind, in JSON and in the tables', { skip: needsRoot() }, () => {
  let env: Env;
  let net: VethPair;
  before(() => {
    env = makeEnv();
    net = makeVethPair();
  });
  after(() => {
    env?.cleanup();
    net?.cleanup();
  });

  const XDP_LINK_FIELDS = ['id', 'kind', 'iface', 'ifindex', 'netns', 'priority', 'position', 'proceed_on', 'mode'].sort();
  /** a link's fields, but the dispatcher's counters, which load and get add */
  const fields = (l: object) => Object.keys(l).filter((k) => k !== 'counters').sort();
  const row = (text: string, header: string, cell: string) => {
    const lines = text.split('\n');
    const h = lines.findIndex((l) => l.trim().startsWith(header));
    assert.ok(h >= 0, `a table with ${header}: ${text}`);
    const cols = lines[h].trim().split(/\s+/);
    const r = lines.slice(h + 1).map((l) => l.trim().split(/\s+/)).find((c) => c.includes(cell));
    assert.ok(r, `a row with ${cell}: ${text}`);
    return Object.fromEntries(cols.map((c, i) => [c, r[i]]));
  };

  test('load, get, list and list --pending', () => {
    const r = env.run('load', 'file', '--path', fixture('xdp_pass.o'), '--name', 'xdp_pass', '--iface', net.ifB, '--netns', net.nsPathB, '--priority', '30', '--persist', '-o', 'json');
    assert.equal(r.status, 0, r.stderr);
    const loaded = r.json();
    assert.equal(loaded.links[0].kind, 'xdp');
    assert.deepEqual(fields(loaded.links[0]), XDP_LINK_FIELDS, 'the fields of before, and kind');
    const got = env.run('get', String(loaded.id), '-o', 'json').json();
    assert.equal(got.links[0].kind, 'xdp');
    assert.ok('counters' in got.links[0], 'get shows counters');
    assert.deepEqual(fields(got.links[0]), XDP_LINK_FIELDS);
    const listed = env.run('list', '-o', 'json').json();
    assert.deepEqual(listed.map((p: any) => p.links.map((l: any) => [l.id, l.kind])), [[[loaded.links[0].id, 'xdp']]]);
    assert.deepEqual(Object.keys(listed[0].links[0]).sort(), XDP_LINK_FIELDS, 'list shows no counters');

    const table = row(env.run('list').stdout, 'ID', 'xdp_pass');
    assert.deepEqual([table.KIND, table.IFACE, table.PRIORITY, table.LINK], ['xdp', net.ifB + '@' + net.nsB, '30', String(loaded.links[0].id)]);
    const detail = row(env.run('get', String(loaded.id)).stdout, 'LINK', String(loaded.links[0].id));
    assert.deepEqual([detail.KIND, detail.IFACE, detail.PRIORITY], ['xdp', net.ifB, '30']);

    simulateReboot(env, [loaded.id]);
    const pending = env.run('list', '--pending', '-o', 'json').json();
    assert.deepEqual(pending.map((p: any) => p.links.map((l: any) => [l.id, l.kind])), [[[loaded.links[0].id, 'xdp']]]);
    assert.deepEqual(Object.keys(pending[0].links[0]).sort(), ['id', 'kind', 'iface', 'netns', 'priority', 'proceed_on', 'mode'].sort());
    const waiting = row(env.run('list', '--pending').stdout, 'PREV-ID', 'xdp_pass');
    assert.deepEqual([waiting.KIND, waiting.PRIORITY], ['xdp', '30']);

    const restored = env.run('system', 'restore');
    assert.equal(restored.status, 0, restored.stderr);
    const back = row(restored.stdout, 'PREV-ID', 'xdp_pass');
    assert.deepEqual([back.KIND, back.PRIORITY, back.LINK], ['xdp', '30', String(loaded.links[0].id)]);
  });
});
