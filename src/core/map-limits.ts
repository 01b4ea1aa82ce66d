import { limitReached } from '../base/errors.js';
import { BpfMapType, mapTypeName } from '../loader/abi.js';

/** Maps whose max_entries is their size in bytes: ring buffers. */
const SIZED_IN_BYTES = new Set([BpfMapType.RINGBUF, BpfMapType.USER_RINGBUF].map(mapTypeName));

/**
 * A ceiling on the memory an object's maps declare, checked before the kernel creates them. The
 * fuzzer found objects whose map definition (a BTF array dimension) was changed to billions of
 * entries: the kernel then spends tens of seconds reserving gigabytes for one prog array. No
 * real program declares that much; policies can set lower limits from the same facts.
 */
export const MAX_MAP_BYTES = 4 * 1024 ** 3;

export function checkMapSizes(maps: ReadonlyArray<{ name: string; type: string; key_size: number; value_size: number; max_entries: number }>, file: string): void {
  for (const m of maps) {
    // a ring buffer's max_entries is its size in bytes; other maps hold entries of key + value
    const bytes = SIZED_IN_BYTES.has(m.type) ? m.max_entries : m.max_entries * (m.key_size + m.value_size);
    if (bytes > MAX_MAP_BYTES) {
      throw limitReached(
        `map ${m.name} of ${file} declares ${m.max_entries} entries of ${m.key_size}+${m.value_size} bytes (${(bytes / 1024 ** 3).toFixed(1)} GiB), more than the ${MAX_MAP_BYTES / 1024 ** 3} GiB bpfd lets one map take`,
        ['declare a smaller max_entries in the map definition'],
      );
    }
  }
}
