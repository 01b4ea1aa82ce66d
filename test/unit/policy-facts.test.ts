import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { groupNames } from '../../src/base/accounts.js';
import { helperName, insnFacts, subjectFromCredentials, subjectFromProcess } from '../../src/policy/facts.js';
import { HELPER_NAMES } from '../../src/policy/helper-names.js';
import { fixtureProgram } from '../helpers/policy.js';

const insn = (code: number, regs: number, imm: number) => {
  const b = Buffer.alloc(8);
  b[0] = code;
  b[1] = regs;
  b.writeInt32LE(imm, 4);
  return b;
};

describe('bytecode facts', () => {
  it('names the helpers of the counting fixture and counts its instructions', () => {
    const p = fixtureProgram('xdp_count');
    assert.equal(p.type, 'xdp');
    assert.equal(p.section, 'xdp');
    assert.equal(p.license, 'GPL');
    assert.deepEqual(p.helpers, ['bpf_map_lookup_elem']);
    assert.deepEqual(p.kfuncs, []);
    assert.match(p.sha256 ?? '', /^[0-9a-f]{64}$/);
    assert.ok(p.insn_count > 5 && p.insn_count < 100, `insn_count ${p.insn_count}`);
  });

  it('finds no helper in the pass-through fixture', () => {
    assert.deepEqual(fixtureProgram('xdp_pass').helpers, []);
  });

  it('attributes helpers called from a .text subprogram to the program', () => {
    const p = fixtureProgram('xdp_redirect');
    assert.deepEqual(p.helpers, ['bpf_redirect']);
    assert.equal(p.license, 'Dual MIT/GPL');
  });

  it('reads helper ids, kfunc calls and ignores bpf-to-bpf calls', () => {
    const code = Buffer.concat([
      insn(0x85, 0x00, 1), // call bpf_map_lookup_elem
      insn(0x85, 0x00, 23), // call bpf_redirect
      insn(0x85, 0x10, 4), // pseudo call: a subprogram
      insn(0x85, 0x20, 77), // kfunc, named by the caller
      insn(0x85, 0x20, 78), // kfunc without a name
      insn(0x85, 0x00, 1), // the same helper twice counts once
      insn(0x95, 0, 0), // exit
    ]);
    const f = insnFacts(code, (i) => (i === 3 ? 'bpf_obj_new_impl' : undefined));
    assert.deepEqual(f.helpers, ['bpf_map_lookup_elem', 'bpf_redirect']);
    assert.deepEqual(f.kfuncs, ['bpf_obj_new_impl', 'kfunc#78']);
    assert.equal(f.calls_subprograms, true);
    assert.equal(f.insn_count, 7);
  });

  it('keeps the number of a helper newer than the header', () => {
    assert.equal(helperName(HELPER_NAMES.length + 5), `bpf_helper_${HELPER_NAMES.length + 5}`);
    assert.equal(helperName(51), 'bpf_redirect_map');
  });

  it('refuses a buffer that is not whole instructions', () => {
    assert.throws(() => insnFacts(Buffer.alloc(12)), /12 bytes is not a whole number of 8-byte instructions/);
  });

  it('names the programs an object has when asked for another', () => {
    assert.throws(() => fixtureProgram('xdp_count', 'nope'), /has no program named nope \(programs: xdp_count\)/);
  });

  it('describes the calling process as a cli subject with group names', () => {
    const s = subjectFromProcess();
    assert.equal(s.uid, process.getuid?.());
    assert.equal(s.pid, process.pid);
    assert.equal(s.via, 'cli');
    assert.ok(s.groups.length > 0);
    if (s.gid === 0) assert.ok(s.groups.includes('root'));
  });

  it('resolves peer credentials to a username and groups, keeping unknown ids as numbers', () => {
    const s = subjectFromCredentials({ uid: 0, gid: 0, pid: 1 });
    assert.deepEqual([s.username, s.via, s.groups.includes('root')], ['root', 'socket', true]);
    const ghost = subjectFromCredentials({ uid: 4000000, gid: 4000001, pid: 2 }, 'cli');
    assert.deepEqual([ghost.username, ghost.groups], ['4000000', ['4000001']]);
    assert.deepEqual(groupNames([0, 0]), ['root']);
  });
});
