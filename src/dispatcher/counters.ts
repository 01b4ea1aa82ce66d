import { readFileSync } from 'node:fs';
import { mapLookup, mapLookupAll, mapUpdate } from '../loader/bpf.js';
import { BpfMapType } from '../loader/abi.js';
import { createMap } from '../loader/prog-load.js';

/**
 * Per-member counters the dispatcher keeps, and the small record that says whose they are.
 *
 * `counters` is an ARRAY with ONE element: a region of CPU_STRIDE bytes per possible CPU, each
 * holding COUNTER_INDEXES blocks of six u64 (aborted, drop, pass, tx, redirect, other). The
 * dispatcher addresses it directly (the map value's address is an immediate) plus
 * `cpu * CPU_STRIDE` from the inlined bpf_get_smp_processor_id, then bumps
 * `block[index][action]` with plain adds: each CPU only writes its own region, so no atomics.
 * A per-CPU array map would say the same more idiomatically, but its lookup is a chain of four
 * dependent loads (key, element pointer, per-CPU offset, counter) that cost ~5 ns per packet
 * here; this layout needs one load before the counter.
 *
 * A member keeps its counter index for as long as it is on the interface, across swaps, so
 * its counts survive rebuilds. Since user space never writes the counters (a read-modify-write
 * would race with the running dispatcher), a newly assigned index records the block's current
 * sums as a baseline in `meta`, and reports subtract it.
 */

export const COUNTER_INDEXES = 32;
export const ACTION_BUCKETS = ['aborted', 'drop', 'pass', 'tx', 'redirect', 'other'] as const;
export type ActionBucket = (typeof ACTION_BUCKETS)[number];
export const COUNTER_BLOCK = ACTION_BUCKETS.length * 8;
export const COUNTERS_PER_CPU = COUNTER_INDEXES * COUNTER_BLOCK;
/** a power of two, so the dispatcher scales the CPU number with a shift; whole cache lines */
export const CPU_STRIDE_SHIFT = 11;
export const CPU_STRIDE = 1 << CPU_STRIDE_SHIFT;

// meta: ARRAY of COUNTER_INDEXES + 1 records of 56 bytes. Records 0..31: {u32 linkId (0 =
// free), u32 reserved, u64 baseline[6]}; record 32: {u32 mode (1 skb, 2 drv), u32 format}.
const META_VALUE_SIZE = 8 + COUNTER_BLOCK;
const META_IFACE_RECORD = COUNTER_INDEXES;
const META_FORMAT = 1;

export interface ActionCounts {
  packets: number;
  actions: Record<ActionBucket, number>;
}

export function createCountersMap(): number {
  return createMap({ mapType: BpfMapType.ARRAY, keySize: 4, valueSize: numPossibleCpus() * CPU_STRIDE, maxEntries: 1, name: 'bpfd_xdp_cnt' });
}

export function createMetaMap(): number {
  return createMap({ mapType: BpfMapType.ARRAY, keySize: 4, valueSize: META_VALUE_SIZE, maxEntries: COUNTER_INDEXES + 1, name: 'bpfd_xdp_meta' });
}

const key = (k: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(k);
  return b;
};

let possibleCpus: number | null = null;
/** CPU numbers the kernel may run the dispatcher on are below this. */
export function numPossibleCpus(): number {
  if (possibleCpus !== null) return possibleCpus;
  const text = readFileSync('/sys/devices/system/cpu/possible', 'utf8').trim();
  let n = 0;
  for (const part of text.split(',')) {
    const [a, b] = part.split('-').map(Number);
    n += b === undefined ? 1 : b - a + 1;
  }
  possibleCpus = n;
  return n;
}

/** Sums of every counter block over all CPUs. */
export function readCounterSums(countersFd: number): bigint[][] {
  const cpus = numPossibleCpus();
  const raw = mapLookup(countersFd, key(0), CPU_STRIDE * cpus);
  const sums = Array.from({ length: COUNTER_INDEXES }, () => ACTION_BUCKETS.map(() => 0n));
  if (!raw) return sums;
  for (let cpu = 0; cpu < cpus; cpu++) {
    for (let idx = 0; idx < COUNTER_INDEXES; idx++) {
      for (let a = 0; a < ACTION_BUCKETS.length; a++) sums[idx][a] += raw.readBigUInt64LE(cpu * CPU_STRIDE + idx * COUNTER_BLOCK + a * 8);
    }
  }
  return sums;
}

export interface MetaRecord {
  linkId: number;
  baseline: bigint[];
}

export interface Meta {
  mode: 'skb' | 'drv' | null;
  owners: MetaRecord[];
}

export function readMeta(metaFd: number): Meta {
  const all = mapLookupAll(metaFd, COUNTER_INDEXES + 1, META_VALUE_SIZE);
  const owners: MetaRecord[] = [];
  for (let i = 0; i < COUNTER_INDEXES; i++) {
    const o = i * META_VALUE_SIZE;
    owners.push({ linkId: all.readUInt32LE(o), baseline: ACTION_BUCKETS.map((_, a) => all.readBigUInt64LE(o + 8 + a * 8)) });
  }
  const m = all.readUInt32LE(META_IFACE_RECORD * META_VALUE_SIZE);
  return { mode: m === 1 ? 'skb' : m === 2 ? 'drv' : null, owners };
}

/** Only which links own a counter block: what runs, without decoding baselines. */
export function readOwnerLinkIds(metaFd: number): number[] {
  const all = mapLookupAll(metaFd, COUNTER_INDEXES, META_VALUE_SIZE);
  const ids: number[] = [];
  for (let i = 0; i < COUNTER_INDEXES; i++) {
    const id = all.readUInt32LE(i * META_VALUE_SIZE);
    if (id !== 0) ids.push(id);
  }
  return ids;
}

export function writeOwner(metaFd: number, index: number, rec: MetaRecord): void {
  const v = Buffer.alloc(META_VALUE_SIZE);
  v.writeUInt32LE(rec.linkId, 0);
  rec.baseline.forEach((b, a) => v.writeBigUInt64LE(b, 8 + a * 8));
  mapUpdate(metaFd, key(index), v);
}

export function writeMode(metaFd: number, mode: 'skb' | 'drv'): void {
  const v = Buffer.alloc(META_VALUE_SIZE);
  v.writeUInt32LE(mode === 'skb' ? 1 : 2, 0);
  v.writeUInt32LE(META_FORMAT, 4);
  mapUpdate(metaFd, key(META_IFACE_RECORD), v);
}

/**
 * Gives each link a counter index: links that already have one keep it; new links take free
 * indexes, whose current sums become their baseline. Returns the assignment and the records
 * to write (new owners) — written only after the new dispatcher is attached.
 */
export function assignCounterIndexes(meta: Meta, sums: bigint[][], linkIds: number[]): { index: Map<number, number>; writes: Array<[number, MetaRecord]> } {
  const index = new Map<number, number>();
  const taken = new Set<number>();
  meta.owners.forEach((o, i) => {
    if (o.linkId && linkIds.includes(o.linkId) && !index.has(o.linkId)) {
      index.set(o.linkId, i);
      taken.add(i);
    }
  });
  const writes: Array<[number, MetaRecord]> = [];
  // Prefer indexes nobody owned, then ones released by links that left, so a departing link's
  // block is reused as late as possible (in-flight packets of the old revision may still count).
  const free = meta.owners.map((o, i) => ({ i, o })).filter(({ i }) => !taken.has(i)).sort((a, b) => Number(a.o.linkId !== 0) - Number(b.o.linkId !== 0));
  for (const id of linkIds) {
    if (index.has(id)) continue;
    const slot = free.shift();
    if (!slot) throw new Error('no free counter index (more members than COUNTER_INDEXES)');
    index.set(id, slot.i);
    writes.push([slot.i, { linkId: id, baseline: [...sums[slot.i]] }]);
  }
  // Released indexes: mark free so readers stop attributing them.
  meta.owners.forEach((o, i) => {
    if (o.linkId && !linkIds.includes(o.linkId) && !writes.some(([w]) => w === i)) writes.push([i, { linkId: 0, baseline: [...sums[i]] }]);
  });
  return { index, writes };
}

export function countsFor(sums: bigint[][], rec: MetaRecord, index: number): ActionCounts {
  const actions = {} as Record<ActionBucket, number>;
  let packets = 0;
  ACTION_BUCKETS.forEach((name, a) => {
    const d = Number(sums[index][a] - rec.baseline[a]);
    actions[name] = d;
    packets += d;
  });
  return { packets, actions };
}
