import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { readBpfElf } from '../../src/loader/elf.js';
import { elfProgramFacts } from '../../src/policy/facts.js';
import { requestFacts } from '../../src/policy/request-facts.js';
import { ROOT } from '../helpers/policy.js';

const object = (name: string) => readBpfElf(path.join(ROOT, 'fixtures', 'bytecode', `${name}.o`));

test('a program that tail-calls another carries the target: merged, and listed with its own facts', () => {
  const elf = object('innocent');
  const own = elfProgramFacts(elf, 'innocent');
  assert.ok(!own.helpers.includes('bpf_redirect'), 'innocent itself calls no redirect');
  const f = requestFacts(elf, 'innocent');
  assert.deepEqual(f.tail_calls, [{ name: 'sneaky', section: 'xdp', insn_count: 4, helpers: ['bpf_redirect'], kfuncs: [] }]);
  assert.deepEqual(f.helpers, ['bpf_redirect', 'bpf_tail_call']);
  assert.equal(f.insn_count, own.insn_count + 4);
});

test('a program without prog-array targets has no tail calls and its own facts', () => {
  const elf = object('xdp_count');
  assert.deepEqual(requestFacts(elf, 'xdp_count'), { ...elfProgramFacts(elf, 'xdp_count'), tail_calls: [] });
  // the named program is not its own target
  const tc = object('xdp_tailcall');
  assert.deepEqual(requestFacts(tc, 'xdp_tail_target').tail_calls, []);
});
