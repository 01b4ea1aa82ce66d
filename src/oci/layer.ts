import { createRequire } from 'node:module';
import os from 'node:os';
import { invalidInput, limitReached } from '../base/errors.js';

/** bpfman's images hold one small object; a layer (or what it unpacks to) above this is refused. */
export const MAX_LAYER_BYTES = 16 * 1024 * 1024;

// node:zlib loads on the first gzip layer (~3-9 ms under Bun): a load from the cache reads the
// object the pull unpacked, and never needs it.
let zlib: typeof import('node:zlib') | null = null;
const loadZlib = () => (zlib ??= createRequire(import.meta.url)('node:zlib') as typeof import('node:zlib'));
const gunzipSync: typeof import('node:zlib').gunzipSync = (b, o) => loadZlib().gunzipSync(b, o);
/** Loads node:zlib now: a pull calls it while its first request is in flight. */
export const preloadGunzip = (): void => void loadZlib();

/**
 * The output chunk for gunzip: the size the gzip trailer declares (ISIZE, the last member's size
 * modulo 2^32), so that a layer unpacks into one buffer rather than 16 KiB pieces joined at the
 * end (~4x the time and the memory touched for a 1 MiB layer). Only a hint: a false one costs a
 * larger or more chunks, never more than the cap, which maxOutputLength enforces.
 */
function gunzipChunk(gz: Buffer, max: number): number {
  const declared = gz.length >= 18 ? gz.readUInt32LE(gz.length - 4) : 0;
  // one byte over: output that fills the chunk exactly would make zlib ask for another
  return Math.max(64, Math.min(Math.max(declared + 1, 64 * 1024), max));
}

const EM_BPF = 247;
const ET_REL = 1;

const isGzip = (b: Buffer) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;
const isZstd = (b: Buffer) => b.length >= 4 && b.readUInt32LE(0) === 0xfd2fb528;
const isElf = (b: Buffer) => b.length >= 4 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;
const isTar = (b: Buffer) => b.length >= 512 && (b.toString('latin1', 257, 262) === 'ustar' || tarChecksumOk(b.subarray(0, 512)));

/** Why an ELF is not a BPF relocatable object for this host, or null when it is one. */
export function notBpfObject(b: Buffer): string | null {
  if (!isElf(b) || b.length < 20) return 'not an ELF file';
  const data = b[5];
  const hostLe = os.endianness() === 'LE';
  if (data !== 1 && data !== 2) return 'ELF with an unknown byte order';
  if ((data === 1) !== hostLe) return `ELF in ${data === 1 ? 'little' : 'big'}-endian byte order, the host is ${hostLe ? 'little' : 'big'}-endian`;
  const le = data === 1;
  const type = le ? b.readUInt16LE(16) : b.readUInt16BE(16);
  const machine = le ? b.readUInt16LE(18) : b.readUInt16BE(18);
  if (machine !== EM_BPF) return `ELF for machine ${machine}, not BPF (${EM_BPF})`;
  if (type !== ET_REL) return `ELF of type ${type}, not a relocatable object (ET_REL)`;
  return null;
}

function tarChecksumOk(h: Buffer): boolean {
  const stored = parseInt(h.toString('latin1', 148, 156).replace(/\0.*$/s, '').trim(), 8);
  if (!Number.isFinite(stored)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum === stored;
}

const cstr = (b: Buffer, from: number, to: number) => {
  const s = b.subarray(from, to);
  const nul = s.indexOf(0);
  return s.toString('utf8', 0, nul < 0 ? s.length : nul);
};

function tarSize(h: Buffer): number {
  if (h[124] & 0x80) {
    // base-256 (GNU) for sizes beyond octal's 8 GiB: far over any cap, refused by the caller
    let n = 0;
    for (let i = 125; i < 136; i++) n = n * 256 + h[i];
    return n;
  }
  const n = parseInt(cstr(h, 124, 136).trim() || '0', 8);
  if (!Number.isSafeInteger(n) || n < 0) throw invalidInput('the layer is a tar with an entry whose size is not a number');
  return n;
}

/** The `path` of a pax extended header, if it sets one. */
function paxPath(body: Buffer): string | undefined {
  let off = 0;
  let found: string | undefined;
  while (off < body.length) {
    const sp = body.indexOf(0x20, off);
    if (sp < 0) break;
    const len = parseInt(body.toString('latin1', off, sp), 10);
    if (!Number.isSafeInteger(len) || len <= 0) break;
    const rec = body.toString('utf8', sp + 1, off + len - 1);
    const eq = rec.indexOf('=');
    if (rec.slice(0, eq) === 'path') found = rec.slice(eq + 1);
    off += len;
  }
  return found;
}

const KIND: Record<string, string> = { '1': 'a hard link', '2': 'a symbolic link', '3': 'a character device', '4': 'a block device', '6': 'a FIFO' };

interface TarEntry {
  name: string;
  type: string;
  data: Buffer;
}

/** The entries of a tar, refusing links, devices and paths that climb out with `..`. */
export function tarEntries(tar: Buffer): TarEntry[] {
  const out: TarEntry[] = [];
  let off = 0;
  let nextName: string | undefined;
  while (off + 512 <= tar.length) {
    const h = tar.subarray(off, off + 512);
    if (h.every((x) => x === 0)) break;
    if (!tarChecksumOk(h)) throw invalidInput(`the layer is a damaged tar: the header at byte ${off} has a wrong checksum`);
    const type = String.fromCharCode(h[156] || 0x30);
    const size = tarSize(h);
    const dataStart = off + 512;
    if (dataStart + size > tar.length) throw invalidInput(`the layer is a truncated tar: an entry at byte ${off} runs past its end`);
    const data = tar.subarray(dataStart, dataStart + size);
    off = dataStart + Math.ceil(size / 512) * 512;
    if (type === 'x') {
      nextName = paxPath(data) ?? nextName;
      continue;
    }
    if (type === 'g') continue;
    if (type === 'L') {
      nextName = cstr(data, 0, data.length);
      continue;
    }
    const prefix = cstr(h, 345, 500);
    const name = nextName ?? (prefix && h.toString('latin1', 257, 262) === 'ustar' ? `${prefix}/${cstr(h, 0, 100)}` : cstr(h, 0, 100));
    nextName = undefined;
    if (name.split('/').includes('..')) throw invalidInput(`the layer's tar has an entry '${name}' with '..' in its path; refused`, ['an image must not write outside its own directory']);
    if (KIND[type] || type === 'K') {
      const target = cstr(h, 157, 257);
      throw invalidInput(`the layer's tar has an entry '${name}' that is ${KIND[type] ?? 'a link'}${target ? ` (to '${target}')` : ''}; refused`, ['a bytecode image holds plain files only']);
    }
    out.push({ name: name.replace(/^(\.\/|\/)+/, ''), type, data });
  }
  return out;
}

/**
 * The BPF object in a layer: a gzip or plain tar (the first `.o` entry that is a BPF ELF
 * relocatable object in the host's byte order), or the object itself, raw or gzipped. Told apart
 * by magic bytes, not by the media type, which image builders get wrong.
 */
export function objectFromLayer(layer: Buffer, mediaType = '', max = MAX_LAYER_BYTES): { object: Buffer; entry: string | null } {
  if (layer.length > max) throw limitReached(`the layer is ${layer.length} bytes, over the ${max}-byte limit`);
  if (isZstd(layer) || mediaType.endsWith('+zstd') || mediaType.endsWith('.zstd')) {
    throw invalidInput('the layer is zstd-compressed, which bpfd does not read', ['rebuild the image with a gzip or uncompressed layer (bpfd image build makes one)']);
  }
  let bytes = layer;
  if (isGzip(bytes)) {
    try {
      bytes = gunzipSync(bytes, { maxOutputLength: max, chunkSize: gunzipChunk(bytes, max) });
    } catch (e) {
      const err = e as Error & { code?: string };
      if (err.code === 'ERR_BUFFER_TOO_LARGE' || /Cannot create a Buffer larger|maxOutputLength/i.test(err.message)) {
        throw limitReached(`the layer unpacks to more than ${max} bytes; refused`);
      }
      throw invalidInput(`the layer is gzip but does not unpack: ${err.message}`);
    }
    if (isZstd(bytes)) throw invalidInput('the layer holds zstd data, which bpfd does not read');
  }
  if (isElf(bytes)) {
    const why = notBpfObject(bytes);
    if (why) throw invalidInput(`the layer is an ELF file but not a BPF object: ${why}`);
    return { object: bytes, entry: null };
  }
  if (!isTar(bytes)) throw invalidInput('the layer is neither a tar, a gzip tar, nor an ELF object', ['a bytecode image has the BPF object (.o) in its first layer']);
  const entries = tarEntries(bytes);
  const skipped: string[] = [];
  for (const e of entries) {
    if (e.type !== '0' && e.type !== '7') continue;
    if (!e.name.endsWith('.o')) continue;
    const why = notBpfObject(e.data);
    if (!why) return { object: Buffer.from(e.data), entry: e.name };
    skipped.push(`${e.name}: ${why}`);
  }
  const files = entries.filter((e) => e.type === '0' || e.type === '7').map((e) => e.name);
  throw invalidInput('the layer has no BPF object: no .o entry is a BPF relocatable ELF for this host', [
    ...skipped,
    `files in the layer: ${files.join(', ') || 'none'}`,
  ]);
}
