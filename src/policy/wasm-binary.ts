/**
 * Reading and writing the WebAssembly binary format, for the fuel rewrite (wasm-fuel.ts): a
 * bounds-checked reader, a growable writer, LEB128 and the section list.
 */

export class WasmRewriteError extends Error {
  /**
   * @param unsupported true for valid WebAssembly using a feature this rewriter does not handle
   * (SIMD, threads, exceptions, GC), false for a malformed module
   */
  constructor(
    message: string,
    readonly unsupported = false,
  ) {
    super(message);
    this.name = 'WasmRewriteError';
  }
}

export const SEC_TYPE = 1;
export const SEC_IMPORT = 2;
export const SEC_FUNCTION = 3;
export const SEC_GLOBAL = 6;
export const SEC_EXPORT = 7;
export const SEC_CODE = 10;
// Position of each known section id in the order the binary format requires; custom sections (0)
// may sit anywhere and keep their place.
export const SECTION_RANK: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };

export interface Section {
  id: number;
  /** where the section begins: its id byte */
  header: number;
  /** its content, after id and size */
  start: number;
  end: number;
}

/** Cursor over the input; every read is bounds-checked so a truncated module is a clear error. */
export class Reader {
  pos: number;
  constructor(
    readonly b: Uint8Array,
    pos: number,
    readonly end: number,
  ) {
    this.pos = pos;
  }

  byte(): number {
    if (this.pos >= this.end) throw new WasmRewriteError(`unexpected end of data at byte ${this.pos}`);
    return this.b[this.pos++];
  }

  u32(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const byte = this.byte();
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) break;
      shift += 7;
      if (shift > 28) throw new WasmRewriteError(`LEB128 integer too long at byte ${this.pos}`);
    }
    if (result > 0xffffffff) throw new WasmRewriteError(`LEB128 integer out of range at byte ${this.pos}`);
    return result;
  }

  /** Skips a (signed or unsigned) LEB128 integer of at most `maxBytes` bytes. */
  skipLeb(maxBytes: number): void {
    for (let n = 1; ; n++) {
      if ((this.byte() & 0x80) === 0) return;
      if (n >= maxBytes) throw new WasmRewriteError(`LEB128 integer too long at byte ${this.pos}`);
    }
  }

  skip(n: number): void {
    if (this.pos + n > this.end) throw new WasmRewriteError(`unexpected end of data at byte ${this.pos}`);
    this.pos += n;
  }

  limits(): void {
    const flags = this.byte();
    const lebBytes = flags & 0x04 ? 10 : 5; // memory64 limits are u64
    this.skipLeb(lebBytes);
    if (flags & 0x01) this.skipLeb(lebBytes);
  }
}

/** Growable output. */
export class Writer {
  buf: Uint8Array<ArrayBuffer>;
  len = 0;
  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
  }

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.len + n));
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  bytes(src: Uint8Array, start: number, end: number): void {
    this.reserve(end - start);
    this.buf.set(src.subarray(start, end), this.len);
    this.len += end - start;
  }

  array(src: ArrayLike<number>): void {
    this.reserve(src.length);
    this.buf.set(src, this.len);
    this.len += src.length;
  }

  u32(v: number): void {
    this.array(leb(v));
  }

  /** Leaves room for a size written later with `patch`, always 5 bytes (padded LEB128). */
  placeholder(): number {
    this.reserve(5);
    this.len += 5;
    return this.len - 5;
  }

  patch(at: number, v: number): void {
    for (let i = 0; i < 4; i++) this.buf[at + i] = ((v >>> (7 * i)) & 0x7f) | 0x80;
    this.buf[at + 4] = (v >>> 28) & 0x0f;
  }
}

export function leb(v: number): number[] {
  const out: number[] = [];
  do {
    let byte = v & 0x7f;
    v >>>= 7;
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return out;
}

export function sleb64(v: bigint): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = Number(v & 0x7fn);
    v >>= 7n;
    const done = (v === 0n && (byte & 0x40) === 0) || (v === -1n && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

export function readSections(b: Uint8Array): Section[] {
  if (b.length < 8 || b[0] !== 0x00 || b[1] !== 0x61 || b[2] !== 0x73 || b[3] !== 0x6d) {
    throw new WasmRewriteError('not a WebAssembly binary (no \\0asm header)');
  }
  if (b[4] !== 1 || b[5] !== 0 || b[6] !== 0 || b[7] !== 0) {
    throw new WasmRewriteError(`unsupported WebAssembly binary version ${b[4] | (b[5] << 8) | (b[6] << 16) | (b[7] << 24)}`);
  }
  const sections: Section[] = [];
  const r = new Reader(b, 8, b.length);
  while (r.pos < b.length) {
    const header = r.pos;
    const id = r.byte();
    const size = r.u32();
    const start = r.pos;
    r.skip(size);
    if (id !== 0 && SECTION_RANK[id] === undefined) throw new WasmRewriteError(`unknown section id ${id} at byte ${start}`);
    sections.push({ id, header, start, end: r.pos });
  }
  return sections;
}

/** How many globals and functions the module imports: they come first in their index spaces. */
export function importCounts(b: Uint8Array, s: Section | undefined): { globals: number; functions: number } {
  let globals = 0;
  let functions = 0;
  if (!s) return { globals, functions };
  const r = new Reader(b, s.start, s.end);
  for (let n = r.u32(); n > 0; n--) {
    r.skip(r.u32()); // module
    r.skip(r.u32()); // field
    const kind = r.byte();
    if (kind === 0x00) {
      r.u32(); // function: type index
      functions++;
    } else if (kind === 0x01) {
      r.byte(); // table: element type
      r.limits();
    } else if (kind === 0x02) r.limits();
    else if (kind === 0x03) {
      r.byte(); // global: value type, mutability
      r.byte();
      globals++;
    } else if (kind === 0x04) {
      r.byte(); // tag: attribute, type index
      r.u32();
    } else throw new WasmRewriteError(`unknown import kind ${kind} at byte ${r.pos - 1}`);
  }
  return { globals, functions };
}

