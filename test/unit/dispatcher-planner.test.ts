import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BpfdError } from '../../src/base/errors.js';
import {
  DEFAULT_PROCEED_ON,
  maskToProceedOn,
  MAX_XDP_MEMBERS,
  parseProceedOn,
  planSlots,
  proceedOnMask,
  type PlanMember,
} from '../../src/dispatcher/planner.js';

const m = (linkId: number, priority: number, seq: number, proceedOn = DEFAULT_PROCEED_ON): PlanMember => ({ linkId, progId: 1000 + linkId, priority, seq, proceedOn });

describe('dispatcher planner', () => {
  it('orders by priority ascending and numbers positions from 0', () => {
    const slots = planSlots('eth0', [m(1, 50, 1), m(2, 10, 2), m(3, 1000, 3), m(4, 0, 4)]);
    assert.deepEqual(slots.map((s) => s.member.linkId), [4, 2, 1, 3]);
    assert.deepEqual(slots.map((s) => s.position), [0, 1, 2, 3]);
  });

  it('keeps attach order among equal priorities, whatever the input order', () => {
    const slots = planSlots('eth0', [m(7, 50, 30), m(5, 50, 10), m(6, 50, 20), m(1, 49, 99)]);
    assert.deepEqual(slots.map((s) => s.member.linkId), [1, 5, 6, 7]);
  });

  it('encodes proceed-on as 1 << action with dispatcher_return at bit 31', () => {
    assert.equal(proceedOnMask(['pass', 'dispatcher_return']), ((1 << 2) | 2 ** 31) >>> 0);
    assert.equal(proceedOnMask(['aborted', 'drop', 'pass', 'tx', 'redirect']), 0b11111);
    assert.equal(proceedOnMask([]), 0);
    const [slot] = planSlots('eth0', [m(1, 1, 1, ['drop'])]);
    assert.equal(slot.mask, 2);
    assert.deepEqual(maskToProceedOn(proceedOnMask(['tx', 'dispatcher_return'])), ['tx', 'dispatcher_return']);
  });

  it('parses proceed-on lists, defaulting to pass,dispatcher_return', () => {
    assert.deepEqual(parseProceedOn(undefined), ['pass', 'dispatcher_return']);
    assert.deepEqual(parseProceedOn('drop, PASS,xdp_tx'), ['drop', 'pass', 'tx']);
    assert.deepEqual(parseProceedOn(['pass', 'pass,redirect']), ['pass', 'redirect']);
    assert.throws(() => parseProceedOn('pass,bogus'), (e: unknown) => e instanceof BpfdError && e.kind === 'invalid' && /bogus/.test(e.message));
    assert.throws(() => parseProceedOn(''), (e: unknown) => e instanceof BpfdError && e.kind === 'invalid');
  });

  it('allows 10 programs and refuses the 11th with a clear failure', () => {
    const ten = Array.from({ length: MAX_XDP_MEMBERS }, (_, i) => m(i + 1, (i * 37) % 11, i));
    assert.equal(planSlots('eth0', ten).length, 10);
    assert.throws(
      () => planSlots('eth0', [...ten, m(11, 5, 11)]),
      (e: unknown) => e instanceof BpfdError && e.kind === 'limit' && /interface eth0 already has 10 XDP programs \(the maximum\)/.test(e.message),
    );
  });

  it('positions equal priority rank for scrambled priorities', () => {
    const prios = [700, 3, 450, 999, 12, 0, 88, 500, 501, 250];
    const slots = planSlots('veth0', prios.map((p, i) => m(i + 1, p, i)));
    const rank = [...prios].sort((a, b) => a - b);
    slots.forEach((s) => assert.equal(s.member.priority, rank[s.position]));
  });

  it('refuses priorities outside 0..1000 and duplicate links', () => {
    assert.throws(() => planSlots('eth0', [m(1, 1001, 1)]), (e: unknown) => e instanceof BpfdError && e.kind === 'invalid');
    assert.throws(() => planSlots('eth0', [m(1, -1, 1)]), (e: unknown) => e instanceof BpfdError && e.kind === 'invalid');
    assert.throws(() => planSlots('eth0', [m(1, 1, 1), m(1, 2, 2)]), /twice/);
  });
});
