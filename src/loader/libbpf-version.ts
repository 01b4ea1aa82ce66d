import koffi from 'koffi';
import { failed } from '../base/errors.js';

/**
 * The libbpf bpfd dlopens, and whether bpfd works with it. bpfd needs 1.4: older libbpf (1.1, as
 * Debian bookworm ships it) crashes on some malformed objects inside bpf_object__open_mem, lacks
 * the TCX API, and takes shorter option structs than src/loader/abi.ts declares.
 */
export const MIN_LIBBPF = { major: 1, minor: 4 } as const;

export interface LibbpfVersion {
  major: number;
  minor: number;
  /** libbpf's own version string, e.g. "v1.4" */
  text: string;
  supported: boolean;
}

type Lib = ReturnType<typeof koffi.load>;

export function libbpfVersionOf(lib: Lib): LibbpfVersion {
  const major = Number(lib.func('uint32_t libbpf_major_version(void)')());
  const minor = Number(lib.func('uint32_t libbpf_minor_version(void)')());
  const text = String(lib.func('const char *libbpf_version_string(void)')());
  return { major, minor, text, supported: isSupported(major, minor) };
}

export const isSupported = (major: number, minor: number) => major > MIN_LIBBPF.major || (major === MIN_LIBBPF.major && minor >= MIN_LIBBPF.minor);

/** The error every command that needs libbpf gives on an older one. */
export function unsupportedLibbpf(v: Pick<LibbpfVersion, 'major' | 'minor'>) {
  return failed(`bpfd needs libbpf ${MIN_LIBBPF.major}.${MIN_LIBBPF.minor} or newer, but the libbpf.so.1 this system loads is ${v.major}.${v.minor}`, [
    'on Debian bookworm install it from bookworm-backports: apt-get install -t bookworm-backports libbpf1 (scripts/setup.sh does this)',
    'check which one is loaded with: bpfd version',
  ]);
}

/** For `bpfd version`: what the dynamic linker gives for libbpf.so.1, or why it gives nothing. */
export function describeLibbpf(): LibbpfVersion | { error: string } {
  try {
    return libbpfVersionOf(koffi.load('libbpf.so.1'));
  } catch (e) {
    return { error: (e as Error).message };
  }
}
