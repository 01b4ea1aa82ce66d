import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfdError } from '../../src/base/errors.js';
import { attachableProgram, dryRunOrder, planAttach, planLoad, planRemoveLinks, planUnload, programIn } from '../../src/core/plan.js';
import { runSteps } from '../../src/core/steps.js';
import type { LinkRecord, ProgramRecord } from '../../src/state/records.js';

// Plans are pure: records in, plain data or a typed error out. No kernel, no store, no root.

const program = (id: number, over: Partial<ProgramRecord> = {}): ProgramRecord => ({
  id,
  name: `p${id}`,
  type: 'xdp',
  section: 'xdp',
  bytecode: { path: `/x/p${id}.o`, sha256: 'a'.repeat(64) },
  owner: { uid: 0, username: 'root' },
  metadata: {},
  maps: { pin_path: `/fs/maps/${id}`, owner_id: null },
  map_names: [],
  globals: {},
  application: null,
  license: 'GPL',
  tag: '00',
  loaded_at: '2026-01-01T00:00:00Z',
  persist: false,
  boot_id: 'b',
  ...over,
});
const link = (id: number, progId: number, priority: number, over: Partial<LinkRecord> = {}): LinkRecord => ({
  id,
  prog_id: progId,
  kind: 'xdp',
  iface: 'eth0',
  ifindex: 2,
  netns: null,
  netns_ino: 100,
  priority,
  proceed_on: ['pass'],
  mode: 'drv',
  seq: id,
  created_at: '2026-01-01T00:00:00Z',
  ...over,
});
const eth0 = { iface: 'eth0', ifindex: 2, netnsIno: 100, netns: null };
const attach = (priority: number, mode?: 'skb' | 'drv') => ({ iface: 'eth0', priority, proceedOn: ['pass' as const], mode, netns: null });
const kind = (k: string, re?: RegExp) => (e: unknown) => e instanceof BpfdError && e.kind === k && (!re || re.test(e.message));

describe('load plan', () => {
  it('joins the interface with the links already on it, in the mode it runs in', () => {
    const state = { programs: [program(1), program(2)], links: [link(11, 1, 50), link(12, 2, 10, { ifindex: 3 })] };
    const plan = planLoad(state, { attach: attach(20) }, eth0);
    assert.deepEqual(plan.join?.existing.map((l) => l.id), [11]);
    assert.equal(plan.join?.mode, 'drv');
    assert.equal(plan.shareMapsFrom, undefined);
    assert.equal(planLoad(state, {}, null).join, null);
  });

  it('refuses the 11th program, a mode mismatch, and a map owner that is missing or not persisted', () => {
    const ten = { programs: [program(1)], links: Array.from({ length: 10 }, (_, i) => link(i + 1, 1, i)) };
    assert.throws(() => planLoad(ten, { attach: attach(20) }, eth0), kind('limit', /already has 10 XDP programs \(the maximum\)/));
    const one = { programs: [program(1)], links: [link(1, 1, 50)] };
    assert.throws(() => planLoad(one, { attach: attach(20, 'skb') }, eth0), kind('invalid', /runs its XDP programs in drv mode; --mode skb cannot be mixed in/));
    assert.throws(() => planLoad(one, { mapOwnerId: 9 }, null), kind('invalid', /--map-owner-id 9: no program with that id/));
    assert.throws(() => planLoad(one, { mapOwnerId: 1, persist: true }, null), kind('invalid', /is not persisted/));
    assert.equal(planLoad({ programs: [program(1, { persist: true })], links: [] }, { mapOwnerId: 1, persist: true }, null).shareMapsFrom, '/fs/maps/1');
  });

  it('answers a dry run with the order the interface would run', () => {
    const state = { programs: [program(1), program(2)], links: [link(11, 1, 50), link(12, 2, 10)] };
    const plan = planLoad(state, { attach: attach(20) }, eth0);
    assert.deepEqual(dryRunOrder(state, plan.join, { name: 'new', priority: 20 }).map((o) => [o.position, o.name, o.new]), [
      [0, 'p2', false],
      [1, 'new', true],
      [2, 'p1', false],
    ]);
    assert.deepEqual(dryRunOrder(state, null, { name: 'new', priority: 20 }), []);
  });

  it('names the function and its type, or says what the object has', () => {
    const elf = { path: '/x.o', programs: [{ name: 'f', section: 'xdp', type: 'xdp' as const }, { name: 't', section: 'tp/x', type: 'tracepoint' as const }] };
    assert.deepEqual(programIn(elf, 'f', undefined, true), { section: 'xdp', type: 'xdp' });
    assert.throws(() => programIn(elf, 'g', undefined, false), kind('invalid', /function g is not a program in \/x\.o/));
    assert.throws(() => programIn(elf, 't', undefined, true), kind('invalid', /--iface attaches XDP programs; t is a tracepoint program/));
  });
});

describe('attach, unload and detach plans', () => {
  it('attaches an XDP program once per interface', () => {
    const state = { programs: [program(1), program(2, { type: 'tracepoint' })], links: [link(11, 1, 50)] };
    assert.throws(() => attachableProgram(state, 9), kind('notFound'));
    assert.throws(() => attachableProgram(state, 2), kind('invalid', /is a tracepoint program/));
    assert.throws(() => planAttach(state, attachableProgram(state, 1), eth0, undefined), kind('invalid', /already attached to eth0/));
    assert.deepEqual(planAttach(state, attachableProgram(state, 1), { ...eth0, ifindex: 4 }, 'skb').existing, []);
  });

  it('unloads a program, also one whose maps others share (they keep the maps, as in bpfman)', () => {
    const state = { programs: [program(1), program(2, { maps: { pin_path: '/fs/maps/1', owner_id: 1 } })], links: [] };
    assert.equal(planUnload(state, 1).id, 1);
    assert.equal(planUnload(state, 2).id, 2);
    assert.throws(() => planUnload(state, 3), kind('notFound'));
  });

  it('recomposes each interface a removal leaves, with what stays on it in run order', () => {
    const all = [link(1, 1, 50), link(2, 2, 10), link(3, 3, 30, { ifindex: 3, mode: 'skb' }), link(4, 4, 5)];
    const plan = planRemoveLinks(all, [all[0], all[2]]);
    assert.deepEqual(plan.map((p) => [p.target.ifindex, p.survivors.map((l) => l.id), p.mode]), [
      [2, [4, 2], 'drv'],
      [3, [], 'skb'],
    ]);
  });
});

describe('steps with undo', () => {
  it('runs in order and, on a failure, undoes what was done in reverse', () => {
    const log: string[] = [];
    const step = (n: string, fail = false) => ({ name: n, run: () => { log.push(`run ${n}`); if (fail) throw new BpfdError('kernel', `${n} broke`); }, undo: () => void log.push(`undo ${n}`) });
    assert.throws(() => runSteps([step('a'), step('b'), step('c', true), step('d')]), kind('kernel', /^c broke$/));
    assert.deepEqual(log, ['run a', 'run b', 'run c', 'undo b', 'undo a']);
  });

  it('reports a failing undo beside the original error, never instead of it, and still runs the other undos', () => {
    const undone: string[] = [];
    let caught: unknown;
    try {
      runSteps([
        { name: 'load', run: () => {}, undo: () => void undone.push('load') },
        { name: 'attach', run: () => {}, undo: () => { throw new Error('link is gone'); } },
        { name: 'commit', run: () => { throw new BpfdError('failed', 'store is full', ['first detail']); } },
      ]);
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof BpfdError);
    assert.equal(caught.message, 'store is full');
    assert.equal(caught.kind, 'failed');
    assert.deepEqual(caught.details, ['first detail', 'and undoing "attach" failed too: link is gone']);
    assert.deepEqual(undone, ['load']);
  });
});
