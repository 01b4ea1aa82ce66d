import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addFuel } from '../../src/policy/wasm-fuel.js';
import { body, budgetOf, i32, I32_TO_I32, module, name, section, vec } from '../helpers/wasm.js';

// The loops the fuel rewrite does not charge per iteration (wasm-fuel.ts, wasm-body.ts): one that
// counts a local down (charged its count before it starts), one whose every iteration first calls
// a function charged at entry, one that never branches back. Each is checked for exact spending,
// and each look-alike the rewrite must charge per iteration is a loop that would run on without
// its charges: under a small budget it has to trap. Those loops carry a guard (a second counter
// that returns 1 after GUARD iterations), so that a broken rewrite fails the test instead of
// hanging it.

const GUARD = 100_000;
const SMALL = 1000n;
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const LOCAL_TEE = 0x22;
const BR_IF = 0x0d;
const CALL = 0x10;
const DROP = 0x1a;
const LOOP = [0x03, 0x40];
const IF = [0x04, 0x40];
const END = 0x0b;
const ADD = 0x6a;

// n (param 0) -= 1; br_if 0 while it is not 0: the count down the rewrite recognises
const COUNT_DOWN = [LOCAL_GET, 0x00, ...i32(-1), ADD, LOCAL_TEE, 0x00, BR_IF, 0x00];
// m (local 1) -= 1; if (m == 0) return 1
const GUARD_STEP = [LOCAL_GET, 0x01, ...i32(-1), ADD, LOCAL_TEE, 0x01, 0x45, ...IF, ...i32(1), 0x0f, END];
// i32.const 1; br_if 0: always back
const ALWAYS_BACK = [...i32(1), BR_IF, 0x00];

/** A loop with the guard: m = GUARD; loop { before; guard; after } return 0 */
const guarded = (before: number[], after: number[]) => body([...i32(GUARD), LOCAL_SET, 0x01, ...LOOP, ...before, ...GUARD_STEP, ...after, END, ...i32(0), END], 1);

// Every function takes one i32 and returns one; 0 and 1 are the callees.
const FUNCTIONS: Array<[string, number[]]> = [
  // rec(k) = k == 0 ? 0 : rec(k - 1): on a cycle of calls, so charged at entry
  ['rec', body([LOCAL_GET, 0x00, 0x45, 0x04, 0x7f, ...i32(0), 0x05, LOCAL_GET, 0x00, ...i32(1), 0x6b, CALL, 0x00, END, END])],
  // leaf(k) = k: charged nowhere
  ['leaf', body([LOCAL_GET, 0x00, END])],
  // runs n times (2^32 when n is 0): charged n before it starts
  ['countDown', body([...LOOP, ...COUNT_DOWN, END, LOCAL_GET, 0x00, END])],
  // the same count down, but the body also adds 1 to n: it never reaches 0
  ['counterWritten', guarded([LOCAL_GET, 0x00, ...i32(1), ADD, LOCAL_SET, 0x00], COUNT_DOWN)],
  // the same count down, with a second way back that leaves n alone
  ['secondWayBack', guarded([], [...ALWAYS_BACK, ...COUNT_DOWN])],
  // counts down by 2 from n: from an odd n it never reaches 0
  ['stepOfTwo', guarded([], [LOCAL_GET, 0x00, ...i32(-2), ADD, LOCAL_TEE, 0x00, BR_IF, 0x00])],
  // every iteration first calls rec(0) (one charge), then goes back while n - 1 (i32.sub, not a count down) is not 0
  ['callsFirst', body([...LOOP, ...i32(0), CALL, 0x00, DROP, LOCAL_GET, 0x00, ...i32(1), 0x6b, LOCAL_TEE, 0x00, BR_IF, 0x00, END, LOCAL_GET, 0x00, END])],
  // every iteration first calls leaf, charged nowhere
  ['callsLeafFirst', guarded([...i32(0), CALL, 0x01, DROP], ALWAYS_BACK)],
  // every iteration calls rec only when n is not 0
  ['callsInIf', guarded([LOCAL_GET, 0x00, ...IF, ...i32(0), CALL, 0x00, DROP, END], ALWAYS_BACK)],
  // a loop nothing branches back to: its body runs once
  ['once', body([...LOOP, 0x01, END, LOCAL_GET, 0x00, END])],
];

function instantiate(budget: bigint) {
  const wasm = module(
    section(1, vec([I32_TO_I32])),
    section(3, vec(FUNCTIONS.map(() => [0x00]))),
    section(7, vec(FUNCTIONS.map(([n], i) => [...name(n), 0x00, i]))),
    section(10, vec(FUNCTIONS.map(([, b]) => b))),
  );
  const { bytes, stats } = addFuel(wasm, budget);
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  return { ex: instance.exports as Record<string, (n: number) => number>, fuel: budgetOf(instance.exports), stats };
}

/** What `f(n)` spends from a large budget. */
function spent(f: string, n: number): bigint {
  const { ex, fuel } = instantiate(1_000_000n);
  ex[f](n);
  return 1_000_000n - fuel.value;
}

function assertStopped(f: string, n: number): void {
  const { ex, fuel } = instantiate(SMALL);
  assert.throws(() => ex[f](n), WebAssembly.RuntimeError, `${f}(${n}) ran ${GUARD} iterations on a budget of ${SMALL}`);
  assert.equal(fuel.value, 0n, `${f}(${n}) trapped, but not for the budget`);
}

describe('wasm fuel rewrite: loops not charged per iteration', () => {
  it('finds the count down, and charges the other loops per iteration', () => {
    const { stats } = instantiate(SMALL);
    assert.equal(stats.loops, 8);
    assert.equal(stats.countedLoops, 1);
    // counterWritten, secondWayBack, stepOfTwo, callsLeafFirst, callsInIf
    assert.equal(stats.chargedLoops, 5);
  });

  it('charges a count down its count before it starts, 2^32 when the counter starts at 0', () => {
    assert.equal(spent('countDown', 10), 10n);
    assert.equal(spent('countDown', 1), 1n);
    const { ex, fuel } = instantiate(9n);
    assert.throws(() => ex.countDown(10), WebAssembly.RuntimeError);
    assert.equal(fuel.value, 0n, 'a count down that does not fit in the budget traps at once');
    assertStopped('countDown', 0);
  });

  it('charges per iteration a count down whose counter is also written in the body', () => assertStopped('counterWritten', 5));

  it('charges per iteration a count down with another way back', () => assertStopped('secondWayBack', 5));

  it('charges per iteration a loop counting down by another step than one', () => assertStopped('stepOfTwo', 5));

  it('charges a loop whose every iteration first calls a function charged at entry only through that call', () => {
    assert.equal(spent('callsFirst', 10), 10n);
  });

  it('charges per iteration a loop whose first call is to a function charged nowhere', () => assertStopped('callsLeafFirst', 5));

  it('charges per iteration a loop whose call is made only on some iterations', () => assertStopped('callsInIf', 0));

  it('charges nothing for a loop that never branches back', () => {
    assert.equal(spent('once', 3), 0n);
  });
});
