import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BpfdError } from '../../src/base/errors.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';
import { isGplCompatible, parseBpfElf, programTypeOfSection, readBpfElf } from '../../src/loader/elf.js';

const fixture = (n: string) => path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'fixtures', 'bytecode', n);

test('reads programs, globals and license from the counting fixture', () => {
  const elf = readBpfElf(fixture('xdp_count.o'));
  assert.deepEqual(elf.programs.map((p) => [p.name, p.section]), [['xdp_count', 'xdp']]);
  assert.equal(elf.license, 'GPL');
  const globals = Object.fromEntries(elf.globals.map((g) => [g.name, [g.section, g.size]]));
  assert.deepEqual(globals, { last_len: ['.bss', 8], verdict: ['.rodata', 4] });
  assert.match(elf.sha256, /^[0-9a-f]{64}$/);
});

test('refuses what is not a BPF object, saying why', () => {
  const notBpf = (data: Buffer, why: RegExp) =>
    assert.throws(() => parseBpfElf('x.o', data), (e: unknown) => e instanceof BpfdError && exitCodeOf(e) === 2 && why.test(e.message));
  notBpf(Buffer.from('hello'), /no ELF header/);
  const elf = Buffer.alloc(64);
  elf.writeUInt32BE(0x7f454c46, 0);
  elf[4] = 1;
  notBpf(elf, /not a 64-bit ELF/);
  elf[4] = 2;
  elf[5] = 1;
  elf.writeUInt16LE(62, 18);
  notBpf(elf, /ELF machine is 62, not BPF/);
  assert.throws(() => readBpfElf('/nonexistent.o'), /does not exist/);
});

test('program type from the section, as libbpf names them', () => {
  assert.equal(programTypeOfSection('xdp'), 'xdp');
  assert.equal(programTypeOfSection('xdp.frags'), 'xdp');
  assert.equal(programTypeOfSection('tcx/ingress'), 'tcx');
  assert.equal(programTypeOfSection('tracepoint/syscalls/sys_enter_open'), 'tracepoint');
  assert.equal(programTypeOfSection('uprobe/libc.so.6:malloc'), 'uprobe');
  assert.equal(programTypeOfSection('.text'), 'unspec');
  assert.ok(isGplCompatible('Dual BSD/GPL'));
  assert.ok(!isGplCompatible('Proprietary'));
});
