import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BpfdError } from '../../src/base/errors.js';
import { exitCodeOf } from '../../src/cli/exit-codes.js';
import { checkBpfObject } from '../../src/loader/elf-gate.js';
import { parseBpfElf } from '../../src/loader/elf.js';
import { layoutOf } from '../fuzz/mutate.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'fixtures', 'bytecode');
const original = readFileSync(path.join(dir, 'xdp_tailcall.o'));
const layout = layoutOf(original);
const section = (name: string) => layout.sections.find((s) => s.name === name)!;

/** A copy of the fixture changed by `edit`, which must be refused naming `why`. */
function refused(edit: (d: Buffer) => void, why: RegExp) {
  const d = Buffer.from(original);
  edit(d);
  assert.throws(
    () => parseBpfElf('m.o', d),
    (e: unknown) => e instanceof BpfdError && exitCodeOf(e) === 2 && /^m\.o is not a valid BPF object: /.test(e.message) && why.test(e.message),
  );
}

test('every fixture object passes the gate', () => {
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.o'))) checkBpfObject(f, readFileSync(path.join(dir, f)));
});

test('ELF header and section table: sizes and offsets are checked against the file', () => {
  refused((d) => d.writeUInt16LE(2, 16), /ELF type is 2, not a relocatable object/);
  refused((d) => d.writeBigUInt64LE(BigInt(original.length - 64), 40), /section header table at offset \d+ .* does not fit in the file/);
  refused((d) => d.writeUInt16LE(200, 62), /section name table index 200 is not one of the \d+ sections/);
  // what used to end in "The value of "offset" is out of range": a section past the end
  const near = original.length - 16;
  refused((d) => d.writeBigUInt64LE(BigInt(near), section('xdp').hdr + 24), new RegExp(`section header 3 at offset \\d+: data at offset ${near} of 400 bytes runs past the end of the file \\(${original.length} bytes\\)`));
  refused((d) => d.writeBigUInt64LE(0xffffffffffffffffn, section('.BTF').hdr + 32), /runs past the end of the file/);
  refused((d) => d.writeUInt32LE(0xfffff, section('.maps').hdr), /name offset 1048575 is past the section name table/);
});

test('symbol table, links and relocations: every index names something that exists', () => {
  // what used to end in "Cannot read properties of undefined (reading 'offset')"
  refused((d) => d.writeUInt32LE(99, section('.symtab').hdr + 40), /sh_link 99 is not one of the \d+ sections/);
  refused((d) => d.writeUInt32LE(section('xdp').index, section('.symtab').hdr + 40), /sh_link \d+ does not name a string table/);
  const sym = layout.symtab!.offset + 24 * (layout.symtab!.count - 1);
  refused((d) => d.writeUInt32LE(0xffffff, sym), /symbol \d+ at offset \d+: name offset 16777215 is past the string table/);
  refused((d) => d.writeUInt16LE(0xff00, sym + 6), /section index 65280 is not one of the \d+ sections/);
  const rel = section('.relxdp');
  refused((d) => d.writeUInt32LE(5000, rel.offset + 12), /relocation at offset \d+: symbol index 5000 is past the \d+ symbols/);
  refused((d) => d.writeBigUInt64LE(3n, rel.offset), /offset 3 is not an instruction inside section \d+ \(xdp\)/);
  refused((d) => d.writeUInt32LE(0, rel.hdr + 44), /sh_info 0 does not name a section the relocations apply to/);
});

test('BTF and BTF.ext: headers, type ids and string offsets stay inside the section', () => {
  const btf = section('.BTF').offset;
  refused((d) => d.writeUInt16LE(0x1234, btf), /no BTF magic/);
  refused((d) => d.writeUInt32LE(0x7fffffff, btf + 20), /BTF strings \[\d+, \+2147483647\) run past/);
  const types = btf + original.readUInt32LE(btf + 4) + original.readUInt32LE(btf + 8);
  refused((d) => d.writeUInt32LE(0x7ffff, types), /BTF type 1 at byte 0 of the type section: string offset 524287 is past/);
  refused((d) => d.writeUInt32LE(4000, types + 8), /refers to type 4000, but there are \d+ types/);
  refused((d) => d.writeUInt32LE(31 << 24, types + 4), /unknown kind 31/);
  const ext = section('.BTF.ext').offset;
  const funcInfo = ext + original.readUInt32LE(ext + 4) + original.readUInt32LE(ext + 8);
  refused((d) => d.writeUInt32LE(3, funcInfo), /func_info record size 3/);
  refused((d) => d.writeUInt32LE(0x7fffffff, funcInfo + 4), /section name offset 2147483647 is not a BTF string/);
  refused((d) => d.writeUInt32LE(9999, funcInfo + 16), /type id 9999 is not one of the \d+ BTF types/);
});

test('license and maps sections', () => {
  const lic = section('license');
  refused((d) => d.fill(0x41, lic.offset, lic.offset + lic.size), /license is not a NUL-terminated string/);
  refused((d) => d.writeUInt32LE(original.readUInt32LE(section('.maps').hdr), section('.BTF').hdr), /a second section named \.maps/);
});
