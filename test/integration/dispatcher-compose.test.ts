import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BpfdError } from '../../src/base/errors.js';
import { closeFd, mapLookup, objGet, progInfo } from '../../src/loader/bpf.js';
import { testRun } from '../../src/loader/prog-load.js';
import { composeAndLoad, type ComposeSlot } from '../../src/dispatcher/compose.js';
import { createCountersMap, readCounterSums } from '../../src/dispatcher/counters.js';
import { decodeImage, encodeImage, extractImage, type RelocatableImage } from '../../src/dispatcher/image.js';
import { encodeInsns, I, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_KFUNC_CALL, BPF_JMP, BPF_CALL } from '../../src/base/insn.js';
import { planSlots, proceedOnMask, type ProceedOnName } from '../../src/dispatcher/planner.js';
import { markPacket, marksOf, type Member, memberLab, type MemberLab } from '../helpers/xdp-members.js';

/** Composed dispatchers run with BPF_PROG_TEST_RUN: marks in the packet show who ran, in order. */

const XDP_DROP = 1;
const XDP_PASS = 2;
const DEFAULT: ProceedOnName[] = ['pass', 'dispatcher_return'];

let lab: MemberLab;
const tags = new Map<string, Member>();
function tag(t: number, verdict = XDP_PASS): Member {
  const key = `${t}/${verdict}`;
  if (!tags.has(key)) tags.set(key, lab.load('xdp_tag.o', 'xdp_tag', { tag: t, verdict }));
  return tags.get(key)!;
}

function run(slots: ComposeSlot[], inline: boolean, countersFd?: number) {
  const d = composeAndLoad({ slots, inline, countersFd });
  try {
    const r = testRun(d.fd, { data: markPacket() });
    return { retval: r.retval, marks: marksOf(r.dataOut), inlined: d.inlined, license: d.license, frags: d.frags, gpl: progInfo(d.fd).gplCompatible };
  } finally {
    closeFd(d.fd);
  }
}

const slotsOf = (members: Array<{ m: Member; proceedOn?: ProceedOnName[] }>): ComposeSlot[] =>
  members.map(({ m, proceedOn }, n) => ({ image: m.image, mask: proceedOnMask(proceedOn ?? DEFAULT), counterIndex: n }));

describe('composed XDP dispatcher (BPF_PROG_TEST_RUN)', () => {
  before(() => {
    lab = memberLab();
  });
  after(() => lab.cleanup());

  for (const inline of [false, true]) {
    const mode = inline ? 'inlined' : 'called';
    it(`runs members in planned order (${mode})`, () => {
      const members = [
        { linkId: 1, progId: 0, priority: 500, seq: 1, proceedOn: DEFAULT, m: tag(5) },
        { linkId: 2, progId: 0, priority: 10, seq: 2, proceedOn: DEFAULT, m: tag(1) },
        { linkId: 3, progId: 0, priority: 10, seq: 3, proceedOn: DEFAULT, m: tag(2) },
        { linkId: 4, progId: 0, priority: 1000, seq: 4, proceedOn: DEFAULT, m: tag(9) },
        { linkId: 5, progId: 0, priority: 0, seq: 5, proceedOn: DEFAULT, m: tag(0x20) },
      ];
      const plan = planSlots('test', members);
      const r = run(plan.map((s, n) => ({ image: s.member.m.image, mask: s.mask, counterIndex: n })), inline);
      assert.deepEqual(r.marks, [0x20, 1, 2, 5, 9]);
      assert.equal(r.retval, XDP_PASS);
      assert.deepEqual(r.inlined, plan.map(() => inline));
    });

    it(`stops at a drop by default and goes on when proceed-on includes it (${mode})`, () => {
      const stop = run(slotsOf([{ m: tag(1) }, { m: tag(2, XDP_DROP) }, { m: tag(3) }]), inline);
      assert.deepEqual(stop.marks, [1, 2]);
      assert.equal(stop.retval, XDP_DROP);
      const goOn = run(slotsOf([{ m: tag(1) }, { m: tag(2, XDP_DROP), proceedOn: ['drop', 'pass'] }, { m: tag(3) }]), inline);
      assert.deepEqual(goOn.marks, [1, 2, 3]);
      assert.equal(goOn.retval, XDP_PASS);
    });

    it(`honours dispatcher_return and empty masks (${mode})`, () => {
      const viaRet = run(slotsOf([{ m: tag(1, 31) }, { m: tag(2) }]), inline);
      assert.deepEqual(viaRet.marks, [1, 2]);
      const noRet = run(slotsOf([{ m: tag(1, 31), proceedOn: ['pass'] }, { m: tag(2) }]), inline);
      assert.deepEqual(noRet.marks, [1]);
      assert.equal(noRet.retval, 31, 'an action the mask does not continue on is returned as is');
      const passStops = run(slotsOf([{ m: tag(1), proceedOn: ['drop'] }, { m: tag(2) }]), inline);
      assert.deepEqual(passStops.marks, [1]);
      assert.equal(passStops.retval, XDP_PASS);
      // After the last member the chain passes, whatever that member returned on its way on.
      const lastRet = run(slotsOf([{ m: tag(1) }, { m: tag(2, 31) }]), inline);
      assert.equal(lastRet.retval, XDP_PASS);
    });

    it(`composes tail-call, bpf_loop, subprogram and global-variable members (${mode})`, () => {
      const r = run(
        slotsOf([
          { m: lab.load('xdp_tailcall.o', 'xdp_tailcall') },
          { m: lab.load('xdp_loop.o', 'xdp_loop') },
          { m: lab.load('xdp_subprog.o', 'xdp_subprog') },
          { m: lab.load('xdp_globals.o', 'xdp_globals') },
          { m: tag(0x33) },
        ]),
        inline,
      );
      // tail call: 0x70 then its target 0x71; bpf_loop: sum 0..9 = 45; subprograms: 3*7+1 = 22;
      // globals: base 0x40 + one packet seen.
      assert.deepEqual(r.marks, [0x70, 0x71, 45, 22, 0x41, 0x33]);
      assert.equal(r.retval, XDP_PASS);
      assert.equal(r.inlined[0], false, 'a tail-calling member is always called');
      assert.deepEqual(r.inlined.slice(1), [inline, inline, inline, inline]);
    });
  }

  it('keeps counters per member and action in the per-CPU map', () => {
    const countersFd = createCountersMap();
    try {
      const slots = slotsOf([{ m: tag(1) }, { m: tag(2, XDP_DROP) }, { m: tag(3) }]);
      slots[0].counterIndex = 7;
      slots[1].counterIndex = 3;
      slots[2].counterIndex = 31;
      for (const inline of [false, true]) {
        const d = composeAndLoad({ slots, inline, countersFd });
        testRun(d.fd, { data: markPacket(), repeat: 50 });
        closeFd(d.fd);
      }
      const sums = readCounterSums(countersFd);
      assert.equal(sums[7][XDP_PASS], 100n);
      assert.equal(sums[3][XDP_DROP], 100n);
      assert.equal(sums[31].reduce((a, b) => a + b, 0n), 0n, 'members after a drop see nothing');
    } finally {
      closeFd(countersFd);
    }
  });

  it('fits a member with a 480-byte stack next to others: the main adds no stack', () => {
    const big = lab.load('xdp_bigstack.o', 'xdp_bigstack');
    const r = run(slotsOf([{ m: tag(1) }, { m: lab.load('xdp_tailcall.o', 'xdp_tailcall') }, { m: big }, { m: tag(2) }]), true, createCountersMap());
    assert.deepEqual(r.marks, [1, 0x70, 0x71, 0x90, 2]);
    assert.equal(r.inlined[2], false, 'the 480-byte frame cannot share the main frame with a tail-call chain');
  });

  it('declares GPL only if every member does, and frags only if every member has them', () => {
    const mit = lab.load('xdp_mit.o', 'xdp_mit');
    const frags = lab.load('xdp_frags.o', 'xdp_frags');
    const gpl = run(slotsOf([{ m: tag(1) }, { m: frags }]), true);
    assert.equal(gpl.license, 'GPL');
    assert.equal(gpl.gpl, true);
    assert.equal(gpl.frags, false);
    const mixed = run(slotsOf([{ m: tag(1) }, { m: mit }]), true);
    assert.deepEqual(mixed.marks, [1, 0x4d]);
    assert.equal(mixed.gpl, false);
    const allFrags = run(slotsOf([{ m: frags }]), true);
    assert.equal(allFrags.frags, true);
    assert.deepEqual(allFrags.marks, [0x66]);
  });

  it('rebuilds from a stored image alone, with maps from their pins (state shared with the member)', () => {
    const g = lab.load('xdp_globals.o', 'xdp_globals');
    const stored = decodeImage(encodeImage(g.image));
    assert.deepEqual(stored, g.image);
    const r1 = run(slotsOf([{ m: { ...g, image: stored } }]), false);
    const r2 = run(slotsOf([{ m: { ...g, image: stored } }]), true);
    assert.deepEqual([r1.marks, r2.marks], [[0x41], [0x42]], '.bss hits carries over between revisions');
    const bss = objGet(path.join(g.mapsDir, 'bss'));
    try {
      assert.equal(mapLookup(bss, Buffer.alloc(4), 8)!.readBigUInt64LE(0), 10n);
    } finally {
      closeFd(bss);
    }
  });

  it('refuses, when extracting, what it could not rebuild', () => {
    const ldMap = encodeInsns([...I.ldMap(1, BPF_PSEUDO_MAP_FD, 42), I.mov64Imm(0, 2), I.exit()]);
    assert.throws(
      () => extractImage(ldMap, [{ fd: 7, pin: '/x' }], { license: 'GPL', frags: false }),
      (e: unknown) => e instanceof BpfdError && /cannot be composed.*map \(fd 42\) that has no pin/.test(e.message),
    );
    const moduleKfunc = encodeInsns([{ code: BPF_JMP | BPF_CALL, dst: 0, src: BPF_PSEUDO_KFUNC_CALL, off: 1, imm: 1234 }, I.mov64Imm(0, 2), I.exit()]);
    assert.throws(
      () => extractImage(moduleKfunc, [], { license: 'GPL', frags: false }),
      (e: unknown) => e instanceof BpfdError && /kfunc of a kernel module/.test(e.message),
    );
    const ok: RelocatableImage = extractImage(ldMap, [{ fd: 42, pin: '/p/m' }], { license: 'Dual BSD/GPL', frags: true });
    assert.deepEqual(ok.maps, [{ insn: 0, pin: '/p/m', value: false }]);
    assert.equal(ok.insns.readInt32LE(4), 0, 'the process-local fd is not kept');
    assert.equal(ok.gplCompatible, true);
  });
});
