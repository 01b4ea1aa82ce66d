// The executable's entry point, and the one place that uses what only Bun offers: `bun build
// --compile` (scripts/compile.mjs) starts here. Everything below it is portable TypeScript
// that node's test runner imports as it is.
import { readFileSync, writeSync } from 'node:fs';
import shippedPolicy from 'bpfd:shipped-policy' with { type: 'file' };
import capabilities from 'bpfd:capabilities' with { type: 'file' };
import bpfmanProtoFile from 'bpfd:bpfman-proto' with { type: 'file' };
import { useEmbeddedProto } from '../base/bpfman-proto.js';
import { useEmbeddedPolicy } from '../base/paths.js';
import { useNativeSha256, useNativeSha256Stream, type Sha256Stream } from '../base/sha256.js';
import { useNormalJit } from '../base/jit.js';
import { useFlock, type Flock } from '../base/file-lock.js';
import { useCapabilitiesFile } from '../policy/capabilities.js';
import { cli } from './main.js';
import { mark } from '../base/timings.js';

mark('modules evaluated');

// The shipped policy (wasm/bpfd.wasm: scripts/compile.mjs resolves the name) rides inside the
// executable, as a path in Bun's embedded file system, so a copied bpfd needs nothing beside it;
// BPFD_POLICY and /etc/bpfd/policy.wasm still win.
useEmbeddedPolicy(shippedPolicy);
useCapabilitiesFile(capabilities);
useEmbeddedProto(bpfmanProtoFile);

// Bun hashes in native code (Bun.SHA256); node:crypto would first evaluate its JavaScript and the
// streams it builds on, ~2 ms of `bpfd version`, which hashes the policy and nothing else.
interface BunApi {
  SHA256: { hash(data: Uint8Array): Uint8Array };
  CryptoHasher: new (algorithm: 'sha256') => Sha256Stream;
  unsafe: { setJITPolicy?(scale: number): void };
}
const { SHA256, CryptoHasher, unsafe } = (globalThis as unknown as { Bun: BunApi }).Bun;
useNativeSha256((data) => {
  const md = SHA256.hash(data);
  return Buffer.from(md.buffer, md.byteOffset, md.byteLength);
});
// and a pull hashes its blobs as they stream with the native incremental hasher
useNativeSha256Stream(() => new CryptoHasher('sha256'));

// flock(2) for the store's open guard (base/file-lock.ts), through Bun's FFI on first use: loading
// koffi for it would cost a command that only reads the store ~1 ms.
useFlock((): Flock => {
  interface BunFfi {
    dlopen(lib: string, symbols: Record<string, { args: string[]; returns: string }>): { symbols: { flock(fd: number, op: number): number; __errno_location(): number } };
    read: { i32(ptr: number, offset: number): number };
  }
  const ffi = require('bun:ffi') as BunFfi;
  const libc = ffi.dlopen('libc.so.6', {
    flock: { args: ['i32', 'i32'], returns: 'i32' },
    __errno_location: { args: [], returns: 'ptr' },
  }).symbols;
  return (fd, op) => (libc.flock(fd, op) === 0 ? { ok: true } : { ok: false, errno: ffi.read.i32(libc.__errno_location(), 0) });
});

// The executable starts with the JIT made reluctant (scripts/compile.mjs: compile.jitPolicy);
// the service sets the normal policy back once it serves (base/jit.ts).
useNormalJit(() => unsafe.setJITPolicy?.(1));

// BPFD_TRACE_MODULES=1: on exit, say which bundled modules this command evaluated (each notes
// itself, scripts/compile.mjs) and which shared objects the process mapped (native addons,
// libbpf), for test/integration/startup-modules.test.ts. Inert unless set.
const modules = (globalThis as { __bpfdModules?: string[] }).__bpfdModules;
if (modules) {
  process.on('exit', () => {
    const mapped = new Set<string>();
    for (const line of readFileSync('/proc/self/maps', 'utf8').split('\n')) {
      const file = /\s(\/\S+\.(?:node|so(?:\.[0-9.]+)?))(?: \(deleted\))?$/.exec(line)?.[1];
      if (file) mapped.add(file);
    }
    writeSync(2, `\nloaded: ${JSON.stringify({ modules, mapped: [...mapped] })}\n`);
  });
}

cli(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
