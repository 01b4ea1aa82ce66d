import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildDispatcher, type ComposeSlot } from '../../src/dispatcher/compose.js';
import { COUNTER_BLOCK, COUNTER_INDEXES, COUNTERS_PER_CPU, CPU_STRIDE, CPU_STRIDE_SHIFT, ACTION_BUCKETS, assignCounterIndexes, countsFor, numPossibleCpus } from '../../src/dispatcher/counters.js';
import { buildFuncBtf } from '../../src/dispatcher/func-btf.js';
import { decodeImage, encodeImage, extractImage, type RelocatableImage } from '../../src/dispatcher/image.js';
import { encodeInsns, type Insn } from '../../src/base/insn.js';

// Expectations come from DESIGN.md §3 and the eBPF instruction encoding, written out by hand
// here (code, dst|src<<4, off, imm), not from the composer's own helpers: ctx in r6, per slot
// `r1 = r6` and a pseudo call, the proceed-on check `r0 > 31 -> return r0`,
// `(1 << r0) & mask -> next slot`, else return r0; XDP_PASS after the last slot; no stack.

/** One instruction, bytes as the kernel reads them. */
function raw(code: number, dst: number, src: number, off: number, imm: number): Buffer {
  const b = Buffer.alloc(8);
  b[0] = code;
  b[1] = (dst & 0xf) | ((src & 0xf) << 4);
  b.writeInt16LE(off, 2);
  b.writeInt32LE(imm | 0, 4);
  return b;
}
const movReg = (dst: number, src: number) => raw(0xbf, dst, src, 0, 0); // ALU64|MOV|X
const movImm = (dst: number, imm: number) => raw(0xb7, dst, 0, 0, imm); // ALU64|MOV|K
const exit = () => raw(0x95, 0, 0, 0, 0);
const pseudoCall = (rel: number) => raw(0x85, 0, 1, 0, rel);
const ja = (off: number) => raw(0x05, 0, 0, off, 0);
const jeqImm = (dst: number, imm: number, off: number) => raw(0x15, dst, 0, off, imm);
const XDP_PASS = 2;
const PASS_AND_RETURN = (1 << 2) | (1 << 31); // proceed-on default: pass, dispatcher_return
/** The five-instruction check after a slot, for its proceed-on mask. */
const check = (mask: number) => [
  raw(0x26, 0, 0, 3, 31), // JMP32|JGT|K: r0 > 31 -> the exit below (return r0)
  raw(0xb4, 1, 0, 0, 1), // ALU|MOV|K: w1 = 1
  raw(0x6c, 1, 0, 0, 0), // ALU|LSH|X: w1 <<= w0
  raw(0x46, 1, 0, 1, mask), // JMP32|JSET|K: w1 & mask -> skip the exit, go on
  exit(), // return r0
];
const hex = (bufs: Buffer[]) => Buffer.concat(bufs).toString('hex').match(/.{16}/g)!;
const builtHex = (insns: Insn[]) => encodeInsns(insns).toString('hex').match(/.{16}/g)!;

function image(insns: Buffer[], extra: Partial<RelocatableImage> = {}): RelocatableImage {
  return {
    insns: Buffer.concat(insns), maps: [], license: 'GPL', gplCompatible: true, frags: false,
    funcStarts: [0], tailCalls: false, callbacks: false, kfuncs: [], ...extra,
  };
}
const slot = (img: RelocatableImage, mask = PASS_AND_RETURN, counterIndex: number | null = null): ComposeSlot => ({ image: img, mask, counterIndex });
const noFd = (pin: string): number => assert.fail(`no map expected, asked for ${pin}`);

/** No instruction of the main names r10 (the frame pointer): the main has no stack of its own. */
function assertNoStack(insns: Insn[], mainEnd: number) {
  insns.slice(0, mainEnd).forEach((i, pc) => assert.ok(i.dst !== 10 && i.src !== 10, `main insn ${pc} uses r10`));
}

const PASS_MEMBER = [movImm(0, XDP_PASS), exit()];
const DROP_MEMBER = [movImm(0, 1), exit()];
// if (ctx == 0) return 0 (aborted); return XDP_TX: two exits
const TWO_EXITS = [jeqImm(1, 0, 2), movImm(0, 3), exit(), movImm(0, 0), exit()];

describe('composed dispatcher, called members', () => {
  test('one member: r6 = ctx, r1 = r6, pseudo call to the block after the main, check, XDP_PASS', () => {
    const built = buildDispatcher([slot(image(PASS_MEMBER))], noFd, { inline: false });
    assert.deepEqual(built.inlined, [false]);
    const main = [movReg(6, 1), movReg(1, 6), pseudoCall(10 - 3), ...check(PASS_AND_RETURN), movImm(0, XDP_PASS), exit()];
    assert.equal(main.length, 10);
    assert.deepEqual(builtHex(built.insns), hex([...main, ...PASS_MEMBER]), 'member appended unchanged after the main');
    assert.deepEqual(built.funcs, [{ insnOff: 0, name: 'bpfd_dispatcher' }, { insnOff: 10, name: 'slot0' }]);
    assertNoStack(built.insns, 10);
  });

  test('three members: one slot each in order, each call reaching its own block, each its own mask', () => {
    // the second member has a subprogram: main calls insn 3 (pc 0: call +2 -> 3)
    const withSub = image([pseudoCall(2), movImm(0, XDP_PASS), exit(), movImm(0, 4), exit()], { funcStarts: [0, 3] });
    const masks = [PASS_AND_RETURN, 1 << 1, 0];
    const built = buildDispatcher([slot(image(PASS_MEMBER), masks[0]), slot(withSub, masks[1]), slot(image(DROP_MEMBER), masks[2])], noFd, { inline: false });
    // main: r6 = r1; slot0 (2 + 5); slot1 (2 + 5); slot2 (2 + exit: an empty mask never goes on); pass, exit
    const mainLen = 1 + 7 + 7 + 3 + 2;
    const start = [mainLen, mainLen + 2, mainLen + 2 + 5];
    const main = [
      movReg(6, 1),
      movReg(1, 6), pseudoCall(start[0] - 3), ...check(masks[0]),
      movReg(1, 6), pseudoCall(start[1] - 10), ...check(masks[1]),
      movReg(1, 6), pseudoCall(start[2] - 17), exit(),
      movImm(0, XDP_PASS), exit(),
    ];
    assert.equal(main.length, mainLen);
    assert.deepEqual(builtHex(built.insns), hex([...main, ...PASS_MEMBER, pseudoCall(2), movImm(0, XDP_PASS), exit(), movImm(0, 4), exit(), ...DROP_MEMBER]));
    assert.deepEqual(built.funcs.map((f) => [f.insnOff, f.name]), [[0, 'bpfd_dispatcher'], [start[0], 'slot0'], [start[1], 'slot1'], [start[1] + 3, 'slot1_f1'], [start[2], 'slot2']]);
    assertNoStack(built.insns, mainLen);
  });
});

describe('composed dispatcher, inlined members', () => {
  test('one member: its body in the main, the last exit falls through into the check', () => {
    const built = buildDispatcher([slot(image(PASS_MEMBER))], noFd, { inline: true });
    assert.deepEqual(built.inlined, [true]);
    assert.deepEqual(builtHex(built.insns), hex([movReg(6, 1), movReg(1, 6), movImm(0, XDP_PASS), ...check(PASS_AND_RETURN), movImm(0, XDP_PASS), exit()]));
    assert.deepEqual(built.funcs, [{ insnOff: 0, name: 'bpfd_dispatcher' }]);
  });

  test('three members: early exits jump to their slot check, ctx stays in r6, no calls', () => {
    const built = buildDispatcher([slot(image(TWO_EXITS)), slot(image(PASS_MEMBER)), slot(image(DROP_MEMBER), 1 << 1)], noFd, { inline: true });
    assert.deepEqual(built.inlined, [true, true, true]);
    const expected = [
      movReg(6, 1),
      // slot 0: jeq r1,0 -> its "mov r0,0" (pc 3 -> 4 here after dropping the exit); first exit -> check
      movReg(1, 6), jeqImm(1, 0, 2), movImm(0, 3), ja(1), movImm(0, 0), ...check(PASS_AND_RETURN),
      movReg(1, 6), movImm(0, XDP_PASS), ...check(PASS_AND_RETURN),
      movReg(1, 6), movImm(0, 1), ...check(1 << 1),
      movImm(0, XDP_PASS), exit(),
    ];
    assert.deepEqual(builtHex(built.insns), hex(expected));
    assertNoStack(built.insns, expected.length);
  });

  test('a body that writes r6 gets ctx in another callee-saved register', () => {
    const writesR6 = image([movReg(6, 1), movImm(0, XDP_PASS), exit()]);
    const built = buildDispatcher([slot(writesR6)], noFd, { inline: true });
    assert.deepEqual(builtHex(built.insns), hex([movReg(7, 1), movReg(1, 7), movReg(6, 1), movImm(0, XDP_PASS), ...check(PASS_AND_RETURN), movImm(0, XDP_PASS), exit()]));
  });

  test('a member that tail calls is called, not inlined', () => {
    const tail = image([raw(0x85, 0, 0, 0, 12), movImm(0, XDP_PASS), exit()], { tailCalls: true });
    assert.deepEqual(buildDispatcher([slot(tail)], noFd, { inline: true }).inlined, [false]);
  });
});

describe('relocatable images', () => {
  // r1 = map fd 5 (BPF_PSEUDO_MAP_FD); r2 = &value of map fd 6 + 8 (BPF_PSEUDO_MAP_VALUE); r0 = 2; exit
  const member = [raw(0x18, 1, 1, 0, 5), raw(0, 0, 0, 0, 0), raw(0x18, 2, 2, 0, 6), raw(0, 0, 0, 0, 8), movImm(0, XDP_PASS), exit()];
  const pins = [{ fd: 5, pin: '/sys/fs/bpf/x/maps/a' }, { fd: 6, pin: '/sys/fs/bpf/x/maps/b' }];

  test('extracting zeroes the fds and names each map reference by its pin', () => {
    const img = extractImage(Buffer.concat(member), pins, { license: 'Dual MIT/GPL', frags: true });
    assert.deepEqual(img.maps, [{ insn: 0, pin: pins[0].pin, value: false }, { insn: 2, pin: pins[1].pin, value: true }]);
    assert.deepEqual(hex([img.insns]), hex([raw(0x18, 1, 1, 0, 0), member[1], raw(0x18, 2, 2, 0, 0), member[3], member[4], member[5]]));
    assert.equal(img.gplCompatible, true);
    assert.equal(img.frags, true);
    assert.deepEqual(img.funcStarts, [0]);
  });

  test('the stored form: magic, header length, JSON header, the instructions bit-exact; decode gives it back', () => {
    const img = extractImage(Buffer.concat(member), pins, { license: 'GPL', frags: false });
    const enc = encodeImage(img);
    assert.equal(enc.subarray(0, 8).toString(), 'BPFDIMG1');
    const hlen = enc.readUInt32LE(8);
    const header = JSON.parse(enc.toString('utf8', 12, 12 + hlen));
    assert.deepEqual(header.maps, img.maps);
    assert.equal(header.insns, undefined, 'instructions are not in the JSON');
    assert.ok(enc.subarray(12 + hlen).equals(img.insns));
    assert.equal(enc.length, 12 + hlen + member.length * 8);
    assert.deepEqual(decodeImage(enc), img);
    assert.throws(() => decodeImage(Buffer.concat([Buffer.from('BPFDIMG0'), enc.subarray(8)])), /not in a format this bpfd knows/);
  });

  test('an fd without a pin is refused, naming the instruction', () => {
    assert.throws(() => extractImage(Buffer.concat(member), pins.slice(0, 1), { license: 'GPL', frags: false }), /map \(fd 6\) that has no pin \(instruction 2\)/);
  });

  test('composing patches each reference with the fd of its reopened pin, keeping the value offset', () => {
    const img = extractImage(Buffer.concat(member), pins, { license: 'GPL', frags: false });
    const fds: Record<string, number> = { [pins[0].pin]: 41, [pins[1].pin]: 42 };
    const built = buildDispatcher([slot(img)], (p) => fds[p], { inline: false });
    const body = builtHex(built.insns).slice(10);
    assert.deepEqual(body, hex([raw(0x18, 1, 1, 0, 41), member[1], raw(0x18, 2, 2, 0, 42), member[3], member[4], member[5]]));
  });
});

describe('func-info BTF', () => {
  test('header, one int, one prototype, one static FUNC per function; func_info pairs offsets with FUNC ids', () => {
    const { btf, funcInfo } = buildFuncBtf([{ insnOff: 0, name: 'main' }, { insnOff: 10, name: 'slot0' }]);
    const typeLen = 16 + 12 + 12 * 2;
    const strings = '\0int\0main\0slot0\0';
    assert.equal(btf.readUInt16LE(0), 0xeb9f);
    assert.deepEqual([btf[2], btf[3]], [1, 0], 'version 1, no flags');
    assert.deepEqual([4, 8, 12, 16, 20].map((o) => btf.readUInt32LE(o)), [24, 0, typeLen, typeLen, strings.length]);
    const t = (n: number) => btf.readUInt32LE(24 + n);
    // [1] INT "int": size 4, signed, 32 bits
    assert.deepEqual([t(0), t(4), t(8), t(12)], [1, 1 << 24, 4, (1 << 24) | 32]);
    // [2] FUNC_PROTO returning [1], no params
    assert.deepEqual([t(16), t(20), t(24)], [0, 13 << 24, 1]);
    // [3] FUNC "main", [4] FUNC "slot0": static linkage (vlen 0), type [2]
    assert.deepEqual([t(28), t(32), t(36)], [5, 12 << 24, 2]);
    assert.deepEqual([t(40), t(44), t(48)], [10, 12 << 24, 2]);
    assert.equal(btf.toString('latin1', 24 + typeLen), strings);
    assert.equal(btf.length, 24 + typeLen + strings.length);
    assert.deepEqual([0, 4, 8, 12].map((o) => funcInfo.readUInt32LE(o)), [0, 3, 10, 4]);
  });
});

describe('counter layout', () => {
  test('six u64 buckets per member, 32 members per CPU, CPUs a power-of-two stride apart', () => {
    assert.deepEqual([...ACTION_BUCKETS], ['aborted', 'drop', 'pass', 'tx', 'redirect', 'other']);
    assert.equal(COUNTER_BLOCK, 48);
    assert.equal(COUNTER_INDEXES, 32);
    assert.equal(COUNTERS_PER_CPU, 32 * 48);
    assert.equal(CPU_STRIDE, 1 << CPU_STRIDE_SHIFT);
    assert.ok(CPU_STRIDE >= COUNTERS_PER_CPU, 'one CPU region never reaches the next');
  });

  test('the dispatcher addresses this CPU region, then block[index][verdict], other for verdicts above redirect', () => {
    const built = buildDispatcher([slot(image(PASS_MEMBER), PASS_AND_RETURN, 3)], noFd, { countersFd: 99, inline: false });
    const off = 3 * COUNTER_BLOCK;
    const main = [
      movReg(6, 1),
      // p = counters value + (cpu << shift), in r7; fail closed (XDP_ABORTED) on an impossible cpu
      raw(0x85, 0, 0, 0, 8), raw(0xa5, 0, 0, 2, numPossibleCpus()), movImm(0, 0), exit(),
      raw(0x67, 0, 0, 0, CPU_STRIDE_SHIFT), raw(0x18, 7, 2, 0, 99), raw(0, 0, 0, 0, 0), raw(0x0f, 7, 0, 0, 0),
      movReg(1, 6), pseudoCall(27 - 11), // the member starts right after the 27-instruction main
      // bucket = min(w0, 5) * 8; block[3][bucket] += 1
      raw(0xbc, 1, 0, 0, 0), raw(0xb5, 1, 0, 1, 5), movImm(1, 5), raw(0x67, 1, 0, 0, 3),
      movReg(2, 7), raw(0x0f, 2, 1, 0, 0), raw(0x79, 1, 2, off, 0), raw(0x07, 1, 0, 0, 1), raw(0x7b, 2, 1, off, 0),
      ...check(PASS_AND_RETURN), movImm(0, XDP_PASS), exit(),
    ];
    assert.equal(main.length, 27);
    assert.deepEqual(builtHex(built.insns), hex([...main, ...PASS_MEMBER]));
    assertNoStack(built.insns, 27);
  });

  test('indexes: kept by links that stay, new links take never-used ones first with their sums as baseline', () => {
    const owners = Array.from({ length: COUNTER_INDEXES }, () => ({ linkId: 0, baseline: [0n, 0n, 0n, 0n, 0n, 0n] }));
    owners[0] = { linkId: 11, baseline: [0n, 0n, 1n, 0n, 0n, 0n] };
    owners[1] = { linkId: 12, baseline: [0n, 0n, 0n, 0n, 0n, 0n] };
    const sums = Array.from({ length: COUNTER_INDEXES }, (_, i) => [0n, BigInt(i), 5n, 0n, 0n, 0n]);
    const { index, writes } = assignCounterIndexes({ owners, mode: 'skb' } as never, sums, [11, 13]);
    assert.deepEqual([...index], [[11, 0], [13, 2]]);
    assert.deepEqual(writes, [[2, { linkId: 13, baseline: [0n, 2n, 5n, 0n, 0n, 0n] }], [1, { linkId: 0, baseline: [0n, 1n, 5n, 0n, 0n, 0n] }]]);
    assert.deepEqual(countsFor(sums, owners[0], 0), { packets: 4, actions: { aborted: 0, drop: 0, pass: 4, tx: 0, redirect: 0, other: 0 } });
  });
});
