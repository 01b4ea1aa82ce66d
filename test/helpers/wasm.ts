import assert from 'node:assert/strict';
import { FUEL_GET_EXPORT, FUEL_SET_EXPORT } from '../../src/policy/wasm-fuel.js';

// Hand-assembling small WebAssembly modules, for the fuel rewrite's tests: each isolates one case.

export const uleb = (n: number): number[] => {
  const out: number[] = [];
  do {
    out.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    n >>>= 7;
  } while (n > 0);
  return out;
};
/** i32.const v (signed LEB128) */
export const i32 = (v: number): number[] => {
  const out: number[] = [0x41];
  for (;;) {
    const byte = v & 0x7f;
    v >>= 7;
    const done = (v === 0 && !(byte & 0x40)) || (v === -1 && byte & 0x40);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
};
export const vec = (items: number[][]) => [...uleb(items.length), ...items.flat()];
export const name = (s: string) => [...uleb(s.length), ...Buffer.from(s)];
export const section = (id: number, content: number[]) => [id, ...uleb(content.length), ...content];
/** A function body: `locals` i32 locals, then `code` (its final end included). */
export const body = (code: number[], locals = 0) => {
  const declarations = locals > 0 ? [0x01, ...uleb(locals), 0x7f] : [0x00];
  return [...uleb(declarations.length + code.length), ...declarations, ...code];
};
export const module = (...sections: number[][]) => Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...sections.flat()]);

export const VOID = [0x60, 0x00, 0x00];
export const I32_TO_I32 = [0x60, 0x01, 0x7f, 0x01, 0x7f];
export const TO_I32 = [0x60, 0x00, 0x01, 0x7f];

/** The budget of an instance, through the accessors the rewrite exports. */
export function budgetOf(exports: WebAssembly.Exports): { value: bigint } {
  const set = exports[FUEL_SET_EXPORT] as (v: bigint) => void;
  const get = exports[FUEL_GET_EXPORT] as () => bigint;
  assert.equal(typeof set, 'function');
  assert.equal(typeof get, 'function');
  return {
    get value() {
      return get();
    },
    set value(v: bigint) {
      set(v);
    },
  };
}
