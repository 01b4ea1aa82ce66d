import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePriority, parseProceedOn, parseXdpAttach, proceedOnMask } from '../../src/core/attach-options.js';
import { BpfdError } from '../../src/base/errors.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';
import { orderLinks } from '../../src/core/dispatcher-members.js';

const usage = (fn: () => unknown, msg: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof BpfdError && exitCodeOf(e) === 2 && msg.test(e.message + ' ' + e.details.join(' ')));

test('priority: 0..1000 whole numbers, default 50', () => {
  assert.equal(parsePriority(undefined), 50);
  assert.equal(parsePriority('0'), 0);
  assert.equal(parsePriority('1000'), 1000);
  usage(() => parsePriority('1001'), /out of range/);
  usage(() => parsePriority('-1'), /out of range/);
  usage(() => parsePriority('2.5'), /out of range/);
  usage(() => parsePriority('ten'), /out of range/);
});

test('proceed-on: names, comma lists and repeats, deduplicated, default like bpfman', () => {
  assert.deepEqual(parseProceedOn(undefined), ['pass', 'dispatcher_return']);
  assert.deepEqual(parseProceedOn(['drop,pass', 'PASS', 'tx']), ['drop', 'pass', 'tx']);
  usage(() => parseProceedOn('pass,bogus'), /unknown --proceed-on action 'bogus'.*actions: aborted, drop, pass, tx, redirect, dispatcher_return/);
  assert.deepEqual(parseProceedOn('XDP_PASS'), ['pass'], 'the kernel spelling is accepted');
});

test('proceed-on masks are 1 << action with dispatcher_return at bit 31', () => {
  assert.equal(proceedOnMask(['pass', 'dispatcher_return']), ((1 << 2) | 2 ** 31) >>> 0);
  assert.equal(proceedOnMask(['aborted', 'drop', 'pass', 'tx', 'redirect']), 0b11111);
  assert.equal(proceedOnMask([]), 0);
});

test('attach options need an interface and a known mode', () => {
  usage(() => parseXdpAttach({}), /--iface is required/);
  usage(() => parseXdpAttach({ iface: 'eth0', mode: 'hw' }), /--mode hw/);
  assert.deepEqual(parseXdpAttach({ iface: 'eth0' }), { iface: 'eth0', priority: 50, proceedOn: ['pass', 'dispatcher_return'], mode: undefined, netns: null });
});

test('order: priority ascending, ties keep attach order', () => {
  const links = [
    { id: 1, priority: 50, seq: 1 },
    { id: 2, priority: 10, seq: 2 },
    { id: 3, priority: 50, seq: 3 },
    { id: 4, priority: 10, seq: 4 },
  ];
  assert.deepEqual(orderLinks(links).map((l) => l.id), [2, 4, 1, 3]);
});
