import { mkdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { BpfdError, Errno, failed, KernelError, invalidInput } from '../base/errors.js';
import { checkpoint } from '../base/test-hooks.js';
import { mapTypeName, ObjectOpenOpts } from './abi.js';
import { objPin, progInfo, type ProgInfo } from './bpf.js';
import type { BpfElf } from './elf.js';
import { koffi, libbpf, takeLibbpfLog, withSignalsBlocked } from './lib.js';

const open_mem = libbpf.func('bpf_object *bpf_object__open_mem(const void *buf, size_t size, const bpf_object_open_opts *opts)');
const obj_load = libbpf.func('int bpf_object__load(bpf_object *obj)');
const obj_close = libbpf.func('void bpf_object__close(bpf_object *obj)');
const next_program = libbpf.func('bpf_program *bpf_object__next_program(bpf_object *obj, bpf_program *prev)');
const next_map = libbpf.func('bpf_map *bpf_object__next_map(bpf_object *obj, bpf_map *prev)');
const prog_name = libbpf.func('const char *bpf_program__name(bpf_program *prog)');
const prog_set_autoload = libbpf.func('int bpf_program__set_autoload(bpf_program *prog, bool autoload)');
const prog_fd = libbpf.func('int bpf_program__fd(bpf_program *prog)');
const prog_insns = libbpf.func('const void *bpf_program__insns(bpf_program *prog)');
const prog_insn_cnt = libbpf.func('size_t bpf_program__insn_cnt(bpf_program *prog)');
const map_name = libbpf.func('const char *bpf_map__name(bpf_map *map)');
const map_is_internal = libbpf.func('bool bpf_map__is_internal(bpf_map *map)');
const map_set_pin_path = libbpf.func('int bpf_map__set_pin_path(bpf_map *map, const char *path)');
const map_fd = libbpf.func('int bpf_map__fd(bpf_map *map)');
const map_initial_value = libbpf.func('void *bpf_map__initial_value(bpf_map *map, _Out_ size_t *size)');
const map_set_initial_value = libbpf.func('int bpf_map__set_initial_value(bpf_map *map, const uint8_t *data, size_t size)');
const get_error = libbpf.func('long libbpf_get_error(const void *ptr)');

export interface LoadRequest {
  /** function name of the program to load (checked by the caller: core's programIn) */
  name: string;
  /** bpfd's bpffs root */
  bpffs: string;
  /** NAME -> bytes to write into .data/.rodata/.bss before load */
  globals: Record<string, Buffer>;
  /** pin directory of an earlier program whose maps this one shares */
  shareMapsFrom?: string;
}

export interface LoadedProgram {
  info: ProgInfo;
  progPin: string;
  mapsDir: string;
  mapNames: string[];
  /** instructions as loaded (libbpf's final form), for composing dispatchers */
  insns: Buffer;
  /** fd -> pin of every map the instructions may reference, valid until the object is closed */
  mapFds: Array<{ fd: number; pin: string }>;
  /** removes the program's and its own maps' pins: the undo of the load */
  discard(): void;
}

/** An object opened by libbpf: read its maps, load one program, then close it. */
export interface BpfObjectHandle {
  /**
   * The object's maps as libbpf sees them after opening (BTF-defined sizes resolved), without
   * touching the kernel: facts for the policy before anything is loaded.
   */
  maps(): MapDescription[];
  /**
   * Loads the named program (and the tail-call targets its prog arrays name), pins every map
   * and the program. Maps are first pinned under a temporary directory and renamed into place
   * once the kernel id is known: a crash leaves a recognisable temp dir, never a half-named one.
   * A failure removes everything it pinned. Once only: libbpf loads an object once.
   */
  load(req: LoadRequest): LoadedProgram;
  /** closes libbpf's object; what was pinned stays (discard() removes it) */
  close(): void;
}

/** Directory names under bpfd's bpffs. */
export const progPinPath = (bpffs: string, id: number) => path.join(bpffs, 'progs', String(id));
export const mapsDirPath = (bpffs: string, id: number) => path.join(bpffs, 'maps', String(id));

/** The object's maps as libbpf sees them, for callers that only describe it (no load follows). */
export function objectMaps(elf: BpfElf): MapDescription[] {
  const obj = openBpfObject(elf);
  try {
    return obj.maps();
  } finally {
    obj.close();
  }
}

/** Opens the object with libbpf, once for the facts and the load. The caller closes it. */
export function openBpfObject(elf: BpfElf): BpfObjectHandle {
  takeLibbpfLog();
  const obj = openObject(elf);
  const openErr = Number(get_error(obj));
  if (!obj || openErr) {
    throw libbpfRefused(elf, openErr);
  }
  let closed = false;
  return {
    maps: () => describeMaps(elf, obj),
    load: (req) => loadFromObject(elf, obj, req),
    close() {
      if (!closed) obj_close(obj);
      closed = true;
    },
  };
}

function loadFromObject(elf: BpfElf, obj: unknown, req: LoadRequest): LoadedProgram {
  const { name, bpffs } = req;
  const globalPatches = planGlobals(elf, req.globals);

  const tmpDir = req.shareMapsFrom ?? path.join(bpffs, 'maps', `tmp_${process.pid}_${Date.now().toString(36)}`);
  const ownsMapsDir = !req.shareMapsFrom;
  mkdirSync(path.join(bpffs, 'maps'), { recursive: true });
  mkdirSync(path.join(bpffs, 'progs'), { recursive: true });
  if (ownsMapsDir) mkdirSync(tmpDir);

  let progPin: string | null = null;
  let finalMapsDir: string | null = null;
  const discard = () => {
    if (progPin) rmSync(progPin, { force: true });
    if (ownsMapsDir) {
      rmSync(tmpDir, { recursive: true, force: true });
      if (finalMapsDir) rmSync(finalMapsDir, { recursive: true, force: true });
    }
  };
  try {
    const keep = new Set([name, ...elf.progArrayTargets]);
    let prog: unknown = null;
    let wanted: unknown = null;
    while ((prog = next_program(obj, prog))) {
      const pname = prog_name(prog) as string;
      if (pname === name) wanted = prog;
      prog_set_autoload(prog, keep.has(pname));
    }
    if (!wanted) throw invalidInput(`libbpf does not see ${name} as a program in ${elf.path}`);

    const maps: Array<{ map: unknown; pinName: string }> = [];
    let map: unknown = null;
    while ((map = next_map(obj, map))) {
      const mname = map_name(map) as string;
      const pinName = map_is_internal(map) ? internalPinName(elf, mname) : mname;
      maps.push({ map, pinName });
      const rc = map_set_pin_path(map, path.join(tmpDir, pinName));
      if (rc < 0) throw new KernelError(`set pin path of map ${mname}`, -rc);
      const patches = globalPatches.get(pinName);
      if (patches) applyGlobals(map, mname, patches);
    }

    const rc = withSignalsBlocked(() => obj_load(obj));
    if (rc < 0) throw loadFailure(name, elf.path, -rc, takeLibbpfLog());
    checkpoint('load:maps-pinned');

    const fd = prog_fd(wanted);
    const info = progInfo(fd);
    const mapNames = maps.map((m) => m.pinName);
    if (ownsMapsDir) {
      finalMapsDir = mapsDirPath(bpffs, info.id);
      renameSync(tmpDir, finalMapsDir);
    } else finalMapsDir = tmpDir;
    progPin = progPinPath(bpffs, info.id);
    objPin(fd, progPin);

    const cnt = Number(prog_insn_cnt(wanted));
    const insnPtr = prog_insns(wanted);
    const insns = Buffer.from(koffi.decode(insnPtr, 'uint8_t', cnt * 8) as Uint8Array);
    const mapFds = maps.map((m) => ({ fd: map_fd(m.map) as number, pin: path.join(finalMapsDir!, m.pinName) }));
    return { info, progPin, mapsDir: finalMapsDir, mapNames, insns, mapFds, discard };
  } catch (e) {
    discard();
    throw e;
  }
}

/**
 * Opens the object from the bytes bpfd read, not from the path again: the file may have changed
 * since the policy judged it, or be gone (a restore after reboot loads from the store). The
 * name is the one libbpf derives from a path, so internal map names stay the same.
 */
function openObject(elf: BpfElf): unknown {
  const name = path.basename(elf.path).replace(/\..*$/, '');
  return open_mem(elf.bytes, elf.bytes.length, { sz: koffi.sizeof(ObjectOpenOpts), object_name: name });
}

/**
 * Internal maps (.bss, .data, .rodata…) are pinned under their section's name without dots
 * (bss, rodata, rodata_str1_1): bpffs refuses names that contain a dot.
 */
export function internalPinName(elf: BpfElf, mapName: string): string {
  const secs = elf.sections.map((s) => s.name).filter((s) => s.startsWith('.') && mapName.endsWith(s));
  secs.sort((a, b) => b.length - a.length);
  const section = secs[0] ?? mapName.replace(/^[^.]*/, '');
  return sectionPinName(section);
}

export const sectionPinName = (section: string) => section.replace(/^\./, '').replace(/\./g, '_');

export { TMP_MAPS_DIR } from './pin-names.js';

type GlobalPatch = { name: string; offset: number; bytes: Buffer };

function planGlobals(elf: BpfElf, globals: Record<string, Buffer>): Map<string, GlobalPatch[]> {
  const bySection = new Map<string, GlobalPatch[]>();
  for (const [gname, bytes] of Object.entries(globals)) {
    const g = elf.globals.find((x) => x.name === gname);
    if (!g) {
      const known = elf.globals.map((x) => `${x.name} (${x.section}, ${x.size} bytes)`).join(', ') || 'none';
      throw invalidInput(`--global ${gname}: no such global variable in ${elf.path}`, [`global variables in the object: ${known}`]);
    }
    if (bytes.length !== g.size) {
      throw invalidInput(`--global ${gname}: the value has ${bytes.length} bytes but ${gname} is ${g.size} bytes`, [
        `give exactly ${g.size * 2} hex digits, in the program's byte order (little-endian), e.g. ${gname}=${'01'.padEnd(g.size * 2, '0')}`,
      ]);
    }
    const key = sectionPinName(g.section);
    const list = bySection.get(key) ?? [];
    list.push({ name: gname, offset: g.offset, bytes });
    bySection.set(key, list);
  }
  return bySection;
}

function applyGlobals(map: unknown, mname: string, patches: GlobalPatch[]) {
  const size = [0];
  const ptr = map_initial_value(map, size);
  if (!ptr) throw failed(`cannot set globals in ${mname}: libbpf exposes no initial value for it`);
  const value = Buffer.from(koffi.decode(ptr, 'uint8_t', size[0]) as Uint8Array);
  for (const p of patches) p.bytes.copy(value, p.offset);
  const rc = map_set_initial_value(map, value, value.length);
  if (rc < 0) throw new KernelError(`set initial value of ${mname}`, -rc);
}

/**
 * libbpf refusing to open an object is bad input like any other malformed object: exit 2 with
 * libbpf's own words, which say what it found wrong.
 */
function libbpfRefused(elf: BpfElf, err: number): BpfdError {
  const words = logLines(takeLibbpfLog()).map((l) => l.replace(/^libbpf: /, ''));
  const reason = words.find((l) => /error|invalid|corrupt|missing|fail|unsupported|bad/i.test(l)) ?? words[words.length - 1];
  const errno = new KernelError('', -err || Errno.EINVAL).message.slice(2);
  return invalidInput(`${elf.path} is not a valid BPF object: libbpf refused it (${errno})${reason ? `: ${reason}` : ''}`, words.slice(-20));
}

function logLines(log: string): string[] {
  return log.split('\n').filter((l) => l.trim() !== '');
}

/** Turns a failed bpf_object__load into an error a user can act on, with the verifier's words. */
function loadFailure(name: string, file: string, errno: number, log: string): BpfdError {
  const lines = logLines(log);
  // libbpf frames the verifier log between these markers; keep the verifier's own words.
  const begin = lines.findIndex((l) => l.includes('-- BEGIN PROG LOAD LOG --'));
  const end = lines.findIndex((l) => l.includes('-- END PROG LOAD LOG --'));
  if (begin >= 0) {
    const verifier = lines.slice(begin + 1, end > begin ? end : undefined);
    const tail = verifier.length > 60 ? ['…', ...verifier.slice(-60)] : verifier;
    return failed(`the kernel verifier rejected program ${name} from ${file} (${new KernelError('', errno).message.slice(2)})`, tail);
  }
  if (errno === Errno.EPERM) {
    return failed(`loading ${name} from ${file} was not permitted (EPERM): bpfd needs root (CAP_BPF and CAP_NET_ADMIN)`, lines.slice(-20));
  }
  return failed(`libbpf failed to load ${name} from ${file}: ${new KernelError('', errno).message.slice(2)}`, lines.slice(-20));
}

const map_type = libbpf.func('int bpf_map__type(bpf_map *map)');
const map_key_size = libbpf.func('uint32_t bpf_map__key_size(bpf_map *map)');
const map_value_size = libbpf.func('uint32_t bpf_map__value_size(bpf_map *map)');
const map_max_entries = libbpf.func('uint32_t bpf_map__max_entries(bpf_map *map)');

export interface MapDescription {
  name: string;
  type: string;
  key_size: number;
  value_size: number;
  max_entries: number;
}

function describeMaps(elf: BpfElf, obj: unknown): MapDescription[] {
  const out: MapDescription[] = [];
  let map: unknown = null;
  while ((map = next_map(obj, map))) {
    const mname = map_name(map) as string;
    out.push({
      name: map_is_internal(map) ? internalPinName(elf, mname) : mname,
      type: mapTypeName(map_type(map) as number),
      key_size: map_key_size(map) as number,
      value_size: map_value_size(map) as number,
      max_entries: map_max_entries(map) as number,
    });
  }
  return out;
}
