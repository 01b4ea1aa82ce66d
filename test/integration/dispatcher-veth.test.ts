import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { BpfdError } from '../../src/base/errors.js';
import { closeFd, mapLookup, objGet } from '../../src/loader/bpf.js';
import { ifindexOf, inNetns, netnsIno } from '../../src/loader/netns.js';
import type { ProceedOnName } from '../../src/dispatcher/planner.js';
import { dispatcherInfo, readMemberCounters, syncXdpInterface, xdpIfaceDir, type SyncXdpResult, type XdpMember } from '../../src/dispatcher/xdp-dispatcher.js';
import { makeVethPair, type VethPair } from '../helpers/netns.js';
import { type Member, memberLab, type MemberLab } from '../helpers/xdp-members.js';

/**
 * Dispatchers on a veth pair between two fresh network namespaces, judged by real traffic
 * (ping from a to b) and by counters: the members' own maps and the dispatcher's.
 */

let lab: MemberLab;
let veth: VethPair;
let nextLink = 100;

interface Side {
  ns: string;
  iface: string;
}
let sideA: Side;
let sideB: Side;

function sync(side: Side, members: XdpMember[]): SyncXdpResult {
  return inNetns(side.ns, () =>
    syncXdpInterface({ bpffs: lab.bpffs, ifindex: ifindexOf(side.iface, side.ns), netnsIno: netnsIno(side.ns), iface: side.iface, mode: undefined, members }),
  );
}
const key = (side: Side) => inNetns(side.ns, () => ({ bpffs: lab.bpffs, ifindex: ifindexOf(side.iface, side.ns), netnsIno: netnsIno(side.ns) }));

let seq = 0;
function member(m: Member, priority: number, proceedOn: ProceedOnName[] = ['pass', 'dispatcher_return']): XdpMember {
  return { linkId: nextLink++, progId: m.progId, priority, seq: seq++, proceedOn, image: m.image };
}

/** packets counted by an xdp_count member in its own map */
function ownCount(m: Member): number {
  const fd = objGet(path.join(m.mapsDir, 'xdp_stats'));
  try {
    return Number(mapLookup(fd, Buffer.alloc(4), 16)!.readBigUInt64LE(0));
  } finally {
    closeFd(fd);
  }
}

/** ping a -> b without blocking the event loop; resolves with ping's summary line */
function pingAsync(count: number, intervalS: number): Promise<{ ok: boolean; loss: string }> {
  return new Promise((resolve) => {
    const p = spawn('ip', ['netns', 'exec', veth.nsA, 'ping', '-n', '-q', '-c', String(count), '-i', String(intervalS), '-W', '1', veth.ipB]);
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('close', (code) => resolve({ ok: code === 0, loss: /(\d+(?:\.\d+)?)% packet loss/.exec(out)?.[1] ?? `? (${out.trim()})` }));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('XDP dispatcher on veth pairs', () => {
  before(() => {
    lab = memberLab();
    veth = makeVethPair();
    sideA = { ns: veth.nsPathA, iface: veth.ifA };
    sideB = { ns: veth.nsPathB, iface: veth.ifB };
    assert.ok(veth.ping(1, 2), 'the pair passes traffic before any XDP program');
  });
  after(() => {
    for (const s of [sideA, sideB]) {
      try {
        sync(s, []);
      } catch {
        /* the namespace goes anyway */
      }
    }
    veth?.cleanup();
    lab?.cleanup();
  });
  beforeEach(() => {
    sync(sideA, []);
    sync(sideB, []);
  });

  it('runs by priority: a drop in the middle stops later members, and the counters show it', () => {
    const first = lab.load('xdp_count.o', 'xdp_count');
    const last = lab.load('xdp_count.o', 'xdp_count');
    const drop = lab.load('xdp_drop.o', 'xdp_drop');
    const mFirst = member(first, 10);
    const mDrop = member(drop, 20);
    const mLast = member(last, 30);
    const r = sync(sideB, [mLast, mDrop, mFirst]);
    assert.equal(r.mode, 'drv');
    assert.deepEqual(r.slots.map((s) => s.linkId), [mFirst.linkId, mDrop.linkId, mLast.linkId]);
    assert.equal(veth.ping(3, 1), false, 'the drop member drops');
    assert.ok(ownCount(first) >= 3);
    assert.equal(ownCount(last), 0);
    const counters = readMemberCounters(key(sideB));
    assert.equal(counters.get(mFirst.linkId)!.actions.pass, ownCount(first));
    assert.equal(counters.get(mDrop.linkId)!.actions.drop, ownCount(first));
    assert.equal(counters.get(mLast.linkId)!.packets, 0);
  });

  it('goes on past a drop when proceed-on includes drop', () => {
    const first = lab.load('xdp_count.o', 'xdp_count');
    const last = lab.load('xdp_count.o', 'xdp_count');
    const drop = lab.load('xdp_drop.o', 'xdp_drop');
    sync(sideB, [member(first, 10), member(drop, 20, ['drop', 'pass']), member(last, 30)]);
    assert.ok(veth.ping(3, 1), 'the last member passes what the middle one dropped');
    assert.ok(ownCount(last) >= 3);
    assert.equal(ownCount(last), ownCount(first));
  });

  it('removes a middle member: survivors renumbered and still running, counts kept', () => {
    const a = lab.load('xdp_count.o', 'xdp_count');
    const c = lab.load('xdp_count.o', 'xdp_count');
    const mA = member(a, 10);
    const mB = member(lab.load('xdp_drop.o', 'xdp_drop'), 20);
    const mC = member(c, 30);
    const before = sync(sideB, [mA, mB, mC]);
    assert.equal(veth.ping(2, 1), false);
    const aBefore = readMemberCounters(key(sideB)).get(mA.linkId)!.packets;
    const afterSwap = sync(sideB, [mA, mC]);
    assert.deepEqual(afterSwap.slots.map((s) => [s.linkId, s.position]), [[mA.linkId, 0], [mC.linkId, 1]]);
    assert.notEqual(afterSwap.dispatcherProgId, before.dispatcherProgId);
    assert.equal(dispatcherInfo(key(sideB))!.progId, afterSwap.dispatcherProgId);
    assert.ok(veth.ping(3, 1));
    assert.ok(ownCount(c) >= 3);
    const counts = readMemberCounters(key(sideB));
    assert.equal(counts.get(mA.linkId)!.packets, ownCount(a), 'a survivor keeps its counts across the swap');
    assert.ok(counts.get(mA.linkId)!.packets >= aBefore + 3);
    assert.equal(counts.has(mB.linkId), false);
  });

  it('fills to 10 with scrambled priorities, refuses the 11th and leaves the 10 running', () => {
    const prios = [700, 3, 450, 999, 12, 0, 88, 500, 501, 250];
    const progs = prios.map(() => lab.load('xdp_count.o', 'xdp_count'));
    const members: XdpMember[] = [];
    let r: SyncXdpResult | null = null;
    prios.forEach((p, i) => {
      members.push(member(progs[i], p));
      r = sync(sideB, members);
    });
    const rank = [...prios].sort((x, y) => x - y);
    for (const s of r!.slots) assert.equal(members.find((m) => m.linkId === s.linkId)!.priority, rank[s.position]);
    const eleventh = member(lab.load('xdp_drop.o', 'xdp_drop'), 1);
    assert.throws(
      () => sync(sideB, [...members, eleventh]),
      (e: unknown) => e instanceof BpfdError && e.kind === 'limit' && new RegExp(`interface ${veth.ifB} already has 10 XDP programs \\(the maximum\\)`).test(e.message),
    );
    assert.equal(dispatcherInfo(key(sideB))!.progId, r!.dispatcherProgId, 'the refused change left the old revision');
    assert.ok(veth.ping(2, 1));
    for (const p of progs) assert.ok(ownCount(p) >= 2, 'all ten ran');
  });

  it('drains to nothing and refills', () => {
    const m1 = member(lab.load('xdp_drop.o', 'xdp_drop'), 50);
    sync(sideB, [m1]);
    assert.equal(veth.ping(1, 1), false);
    const empty = sync(sideB, []);
    assert.equal(empty.dispatcherProgId, null);
    assert.equal(dispatcherInfo(key(sideB)), null);
    assert.equal(existsSync(xdpIfaceDir(key(sideB))), false, 'no pins left');
    assert.ok(veth.ping(2, 1));
    const c = lab.load('xdp_count.o', 'xdp_count');
    const again = sync(sideB, [member(c, 50)]);
    assert.ok(again.dispatcherProgId);
    assert.ok(veth.ping(2, 1));
    assert.ok(ownCount(c) >= 2);
  });

  it('keeps interfaces independent', () => {
    const onB = lab.load('xdp_count.o', 'xdp_count');
    const rB = sync(sideB, [member(onB, 10)]);
    const rA = sync(sideA, [member(lab.load('xdp_drop.o', 'xdp_drop'), 10)]);
    assert.notEqual(rA.dispatcherProgId, rB.dispatcherProgId);
    assert.equal(veth.ping(2, 1), false, 'replies are dropped on a');
    assert.ok(ownCount(onB) >= 2, 'requests still reach b');
    sync(sideA, []);
    assert.equal(dispatcherInfo(key(sideB))!.progId, rB.dispatcherProgId, "a's change did not touch b");
    assert.ok(veth.ping(2, 1));
  });

  it('keeps .bss across swaps', () => {
    const g = lab.load('xdp_globals.o', 'xdp_globals');
    const mG = member(g, 40);
    sync(sideB, [mG]);
    assert.ok(veth.ping(3, 1));
    for (let i = 0; i < 5; i++) sync(sideB, i % 2 ? [mG] : [member(lab.load('xdp_pass.o', 'xdp_pass'), i), mG]);
    assert.ok(veth.ping(3, 1));
    const bss = objGet(path.join(g.mapsDir, 'bss'));
    try {
      const hits = Number(mapLookup(bss, Buffer.alloc(4), 8)!.readBigUInt64LE(0));
      const seen = readMemberCounters(key(sideB)).get(mG.linkId)!.packets;
      assert.ok(seen >= 6);
      assert.equal(hits, 5 * seen, 'every packet since the first revision added its step');
    } finally {
      closeFd(bss);
    }
  });

  it('loses no packet while members come and go under continuous traffic', async () => {
    const base = member(lab.load('xdp_count.o', 'xdp_count'), 500);
    const pool = Array.from({ length: 4 }, (_, i) => member(lab.load(i % 2 ? 'xdp_pass.o' : 'xdp_count.o', i % 2 ? 'xdp_pass' : 'xdp_count'), i * 100));
    sync(sideB, [base]);
    // 30 changes, each made while a burst of pings is in flight, and no burst may lose a packet.
    // A fixed count, not as many as fit in a time window: the figure of how fast swaps go is in
    // bench/dispatcher.ts.
    for (let swaps = 0; swaps < 30; swaps++) {
      const traffic = pingAsync(40, 0.002);
      await sleep(20);
      const chosen = pool.filter((_, i) => (swaps >> i) & 1);
      // Every 8th change drains the interface (detach) and the next attaches afresh.
      sync(sideB, swaps % 8 === 7 ? [] : [...chosen, base]);
      const r = await traffic;
      assert.equal(r.loss, '0', `packet loss during swap ${swaps + 1}: ${r.loss}%`);
      assert.ok(r.ok);
    }
  });
});
