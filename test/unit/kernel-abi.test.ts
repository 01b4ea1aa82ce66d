import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import koffi, { type TypeObject } from 'koffi';
import { Errno } from '../../src/base/errors.js';
import * as abi from '../../src/loader/abi.js';

/**
 * src/loader/abi.ts against the kernel headers on this machine (linux-libc-dev, libbpf-dev): a
 * C program prints the sizeof, offsetof and value of everything abi.ts declares, and each must
 * match. No root, no kernel calls.
 */

/** [koffi struct, the C type, the C spelling of each koffi field (default: the same name), whether sizes must match] */
type StructCheck = { ts: TypeObject; c: string; fields?: Record<string, string | null>; prefix?: string; size: boolean };

const STRUCTS: Record<string, StructCheck> = {
  MapCreateAttr: { ts: abi.MapCreateAttr, c: 'union bpf_attr', size: false },
  ProgLoadAttr: { ts: abi.ProgLoadAttr, c: 'union bpf_attr', size: false },
  TestRunAttr: { ts: abi.TestRunAttr, c: 'union bpf_attr', prefix: 'test.', size: false },
  BtfLoadAttr: { ts: abi.BtfLoadAttr, c: 'union bpf_attr', size: false },
  // `flags` is the bit-field word after ifindex, which C cannot take the offset of: checked below
  ProgInfoStruct: { ts: abi.ProgInfoStruct, c: 'struct bpf_prog_info', fields: { flags: null }, size: true },
  MapInfoStruct: { ts: abi.MapInfoStruct, c: 'struct bpf_map_info', size: true },
  XdpLinkInfoStruct: { ts: abi.XdpLinkInfoStruct, c: 'struct bpf_link_info', fields: { union_align: null, union_rest: null, xdp_ifindex: 'xdp.ifindex' }, size: true },
  // libbpf 1.4's whole option structs (issue #12): every field and the size match its headers
  LinkCreateOpts: { ts: abi.LinkCreateOpts, c: 'struct bpf_link_create_opts', fields: { target: 'perf_event' }, size: true },
  LinkUpdateOpts: { ts: abi.LinkUpdateOpts, c: 'struct bpf_link_update_opts', size: true },
  ObjectOpenOpts: { ts: abi.ObjectOpenOpts, c: 'struct bpf_object_open_opts', fields: { _removed_attach_prog_fd: null }, size: true },
  TimespecStruct: { ts: abi.TimespecStruct, c: 'struct timespec', size: true },
};

/** name in abi.ts -> C expression of its value */
const VALUES: Record<string, [number, string]> = {
  SYS_BPF: [abi.SYS_BPF, '__NR_bpf'],
  BPF_OBJ_NAME_LEN: [abi.BPF_OBJ_NAME_LEN, 'BPF_OBJ_NAME_LEN'],
  PROG_INFO_GPL_COMPATIBLE: [abi.PROG_INFO_GPL_COMPATIBLE, '1'],
  ...Object.fromEntries(Object.entries(abi.BpfCmd).map(([k, v]) => [`BpfCmd.${k}`, [v, `BPF_${k}`]])),
  ...Object.fromEntries(Object.entries(abi.BpfProgType).map(([k, v]) => [`BpfProgType.${k}`, [v, `BPF_PROG_TYPE_${k}`]])),
  ...Object.fromEntries(Object.entries(abi.BpfAttachType).map(([k, v]) => [`BpfAttachType.${k}`, [v, `BPF_${k}`]])),
  ...Object.fromEntries(Object.entries(abi.BpfMapType).map(([k, v]) => [`BpfMapType.${k}`, [v, `BPF_MAP_TYPE_${k}`]])),
  ...Object.fromEntries(Object.entries(abi.Clock).map(([k, v]) => [`Clock.${k}`, [v, `CLOCK_${k}`]])),
  ...Object.fromEntries(Object.entries(abi.BpfFlag).map(([k, v]) => [`BpfFlag.${k}`, [v, k.startsWith('XDP_') ? k : `BPF_${k}`]])),
  // ENOTSUPP is kernel-internal (no userspace header has it)
  ...Object.fromEntries(Object.entries(Errno).filter(([k]) => k !== 'ENOTSUPP').map(([k, v]) => [`Errno.${k}`, [v, k]])),
};

/** Every check as [label, koffi's answer, C expression]. */
function checks(): Array<[string, number, string]> {
  const out: Array<[string, number, string]> = [];
  for (const [name, s] of Object.entries(STRUCTS)) {
    const members = (koffi.introspect(s.ts) as { members: Record<string, unknown> }).members;
    for (const field of Object.keys(members)) {
      const c = s.fields && field in s.fields ? s.fields[field] : field;
      if (c === null) continue;
      out.push([`${name}.${field} offset`, koffi.offsetof(s.ts, field), `offsetof(${s.c}, ${s.prefix ?? ''}${c})`]);
    }
    if (s.size) out.push([`${name} size`, koffi.sizeof(s.ts), `sizeof(${s.c})`]);
  }
  out.push(['ProgInfoStruct.flags offset', koffi.offsetof(abi.ProgInfoStruct, 'flags'), 'offsetof(struct bpf_prog_info, ifindex) + 4']);
  out.push(['XdpLinkInfoStruct.union_rest end', koffi.offsetof(abi.XdpLinkInfoStruct, 'union_rest') + 44, 'sizeof(struct bpf_link_info)']);
  for (const [name, [value, c]] of Object.entries(VALUES)) out.push([name, value, `(long)(${c})`]);
  return out;
}

function compiler(): string {
  for (const cc of ['cc', 'clang', 'gcc']) {
    try {
      execFileSync(cc, ['--version'], { stdio: 'ignore' });
      return cc;
    } catch {
      /* try the next */
    }
  }
  throw new Error('no C compiler (cc, clang or gcc): scripts/setup.sh installs clang');
}

/** Compiles and runs a C program printing one number per check; returns them in order. */
export function headerValues(exprs: string[], dir: string): number[] {
  const src = [
    '#include <stddef.h>',
    '#include <stdio.h>',
    '#include <errno.h>',
    '#include <time.h>',
    '#include <sys/syscall.h>',
    '#include <linux/bpf.h>',
    '#include <linux/if_link.h>',
    '#include <bpf/bpf.h>',
    '#include <bpf/libbpf.h>',
    'int main(void) {',
    ...exprs.map((e) => `  printf("%ld\\n", (long)(${e}));`),
    '  return 0;',
    '}',
  ].join('\n');
  writeFileSync(path.join(dir, 'abi.c'), src);
  execFileSync(compiler(), ['-o', path.join(dir, 'abi'), path.join(dir, 'abi.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
  return execFileSync(path.join(dir, 'abi'), { encoding: 'utf8' }).trim().split('\n').map(Number);
}

describe('kernel ABI declared in src/loader/abi.ts', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'bpfd-abi-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('every size, field offset, command, type, flag and errno matches the headers on this machine', () => {
    const all = checks();
    const c = headerValues(all.map(([, , e]) => e), dir);
    const wrong = all.map(([label, ts], i) => (ts === c[i] ? null : `${label}: abi.ts says ${ts}, the headers ${c[i]}`)).filter(Boolean);
    assert.deepEqual(wrong, []);
    assert.ok(all.length > 150, `${all.length} checks`);
  });

  // The values of each name are among the checks above (BPF_MAP_TYPE_<NAME>, BPF_PROG_TYPE_<NAME>).
  // Here: the tables name every value of the two enums, once, and name it as libbpf does.
  test('map and program types: every value of enum bpf_map_type and enum bpf_prog_type, once, under libbpf\'s name', () => {
    const [maxMap, maxProg] = headerValues(['__MAX_BPF_MAP_TYPE', '__MAX_BPF_PROG_TYPE'], dir);
    const numbers = (e: Record<string, number>) => Object.values(e).sort((a, b) => a - b);
    const upTo = (n: number) => Array.from({ length: n }, (_, i) => i);
    assert.deepEqual(numbers(abi.BpfMapType), upTo(maxMap), 'BpfMapType names each value 0..__MAX_BPF_MAP_TYPE-1 once');
    assert.deepEqual(numbers(abi.BpfProgType), upTo(maxProg), 'BpfProgType names each value 0..__MAX_BPF_PROG_TYPE-1 once');

    const names = libbpfTypeNames(maxMap, maxProg, dir);
    assert.deepEqual(upTo(maxMap).map(abi.mapTypeName), names.maps, 'mapTypeName says what libbpf_bpf_map_type_str says');
    assert.deepEqual(upTo(maxProg).map(abi.progTypeName), names.progs, 'progTypeName says what libbpf_bpf_prog_type_str says');
    assert.equal(abi.mapTypeName(maxMap), `type ${maxMap}`, 'a number newer than the table is shown as a number');
    assert.equal(abi.progTypeName(maxProg), `type ${maxProg}`);
  });
});

/** libbpf's names of map and program types 0..max-1 (libbpf_bpf_*_type_str), from a C program linked with it. */
function libbpfTypeNames(maxMap: number, maxProg: number, dir: string): { maps: string[]; progs: string[] } {
  const src = [
    '#include <stdio.h>',
    '#include <linux/bpf.h>',
    '#include <bpf/libbpf.h>',
    'int main(void) {',
    `  for (int i = 0; i < ${maxMap}; i++) printf("%s\\n", libbpf_bpf_map_type_str(i) ? libbpf_bpf_map_type_str(i) : "?");`,
    `  for (int i = 0; i < ${maxProg}; i++) printf("%s\\n", libbpf_bpf_prog_type_str(i) ? libbpf_bpf_prog_type_str(i) : "?");`,
    '  return 0;',
    '}',
  ].join('\n');
  writeFileSync(path.join(dir, 'names.c'), src);
  execFileSync(compiler(), ['-o', path.join(dir, 'names'), path.join(dir, 'names.c'), '-lbpf'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines = execFileSync(path.join(dir, 'names'), { encoding: 'utf8' }).trim().split('\n');
  return { maps: lines.slice(0, maxMap), progs: lines.slice(maxMap) };
}
