import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import { checkpoint } from '../base/test-hooks.js';
import { timedSync } from '../base/timings.js';
import { failed } from '../base/errors.js';
import { handlesOf, type Store } from './store.js';

/**
 * The image cache. Blobs (manifests, configs, layers) are files named by their digest under
 * `<state>/oci/blobs/sha256/`, written to a temporary name and renamed into place only once
 * complete and verified; the LMDB index says which images exist. An image counts as cached
 * only when its index record is committed, and that happens after its blobs are in place, so a
 * pull killed half-way leaves at most an unreferenced file, never something that looks cached.
 * Such files are swept (sweepBlobs) inside the write transaction that records an image or
 * forgets one: blobs move into place only inside such a transaction, so one there sees every
 * finished pull recorded and no pull half-way between its renames and its commit.
 *   images      manifest digest -> ImageRecord
 *   image_refs  reference as pulled (canonical) -> manifest digest
 */
export interface ImageRecord {
  digest: string;
  index_digest: string | null;
  /** every reference it was pulled as (tags move: a tag names the last digest pulled for it) */
  references: string[];
  registry: string;
  repository: string;
  manifest_media_type: string;
  config_digest: string;
  layer: { digest: string; size: number; media_type: string };
  /** bytes of manifest, config and layer */
  size: number;
  programs: Record<string, string>;
  maps: Record<string, string>;
  labels: Record<string, string>;
  /** the tar entry the object is in, null when the layer is the object */
  entry: string | null;
  /**
   * The object unpacked from the layer at pull, cached as a blob of its own so that a load reads
   * it without unpacking the layer again. Absent in records made before it was kept: those
   * unpack the layer.
   */
  object?: { digest: string; size: number };
  /** cosign signatures found next to the image, kept so that checking them again needs no network */
  signatures: Array<{ payload: string; signature: string }>;
  /** the last verification, and the key set (keySetId) it was made against */
  signature: { verified: boolean; key: string | null; fingerprint: string | null; reason: string | null; keyset: string };
  pulled_at: string;
}

const dbs = new WeakMap<Store, { root: RootDatabase; images: Database<ImageRecord, string>; refs: Database<string, string> }>();
function open(store: Store) {
  let d = dbs.get(store);
  if (!d) {
    const { root } = handlesOf(store);
    d = { root, images: root.openDB<ImageRecord, string>({ name: 'images' }), refs: root.openDB<string, string>({ name: 'image_refs' }) };
    dbs.set(store, d);
  }
  return d;
}

export const blobPath = (stateDir: string, digest: string) => path.join(stateDir, 'oci', 'blobs', 'sha256', digest.replace(/^sha256:/, ''));

/** A verified blob written and fsynced under a temporary name (null: the cache has it already). */
export interface StagedBlob {
  digest: string;
  tmp: string | null;
}

const TMP = /\.tmp-(\d+)-\d+$/;
let staging = 0;

/**
 * Writes a verified blob under a temporary name next to its place; recordImage moves it there.
 * Not `durable`: no fsync, for a blob that can be made again from another (the unpacked object).
 */
export function stageBlob(stateDir: string, digest: string, bytes: Buffer, durable = true): StagedBlob {
  const file = blobPath(stateDir, digest);
  if (existsSync(file)) return { digest, tmp: null };
  const made = mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  // a cache made just now: its directories' own entries must last too (the first pull's blobs)
  if (made) for (let d = path.dirname(file); d.length >= made.length; d = path.dirname(d)) fsyncDir(path.dirname(d));
  // unique in the process too: the service may pull the same blob twice at once
  const tmp = `${file}.tmp-${process.pid}-${++staging}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, bytes);
    if (durable) fsyncSync(fd);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    closeSync(fd);
  }
  return { digest, tmp };
}

/** Drops staged blobs whose image will not be recorded (a pull that failed after writing them). */
export function discardStaged(staged: StagedBlob[]): void {
  for (const b of staged) if (b.tmp) rmSync(b.tmp, { force: true });
}

const alive = (pid: number) => existsSync(`/proc/${pid}`);

/** fsync of a directory: the entries made, renamed or removed in it are on disk once it returns. */
function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes cache files no image record names: blobs a killed pull moved into place but never
 * recorded, and temporary files of processes that are gone (a live pull's stay). Call inside a
 * write transaction, after its own puts: lmdb reads there see them. Returns the names removed.
 */
function sweepBlobs(d: ReturnType<typeof open>, stateDir: string, keep: string[] = []): string[] {
  const dir = path.dirname(blobPath(stateDir, 'sha256:x'));
  if (!existsSync(dir)) return [];
  const kept = new Set(keep.map((b) => b.replace(/^sha256:/, '')));
  // a live process's temporary file is a pull that has not committed yet (this one's too: the service)
  const candidates = readdirSync(dir).filter((name) => {
    const tmp = TMP.exec(name);
    return !kept.has(name) && !(tmp && alive(Number(tmp[1])));
  });
  // nothing else in the cache: no need to read every record (the first range read costs ~2 ms)
  if (!candidates.length) return [];
  const named = new Set([...d.images.getRange()].flatMap((e) => blobsOf(e.value)).map((b) => b.replace(/^sha256:/, '')));
  const removed = candidates.filter((name) => !named.has(name));
  for (const name of removed) rmSync(path.join(dir, name), { force: true });
  return removed;
}

export function readBlob(stateDir: string, digest: string): Buffer | null {
  const file = blobPath(stateDir, digest);
  return existsSync(file) ? readFileSync(file) : null;
}

export function imageByDigest(store: Store, digest: string): ImageRecord | undefined {
  return open(store).images.get(digest);
}

export function digestOfReference(store: Store, ref: string): string | undefined {
  return open(store).refs.get(ref);
}

export function allImages(store: Store): ImageRecord[] {
  return [...open(store).images.getRange()].map((e) => e.value);
}

/**
 * Records an image and points the reference at it, in one write transaction: its staged blobs
 * move into place, the records are put, and cache files no record names are swept.
 */
export function recordImage(store: Store, stateDir: string, staged: StagedBlob[], rec: ImageRecord, reference: string): ImageRecord {
  const d = open(store);
  return d.root.transactionSync(() => {
    for (const b of staged) {
      const file = blobPath(stateDir, b.digest);
      if (b.tmp) renameSync(b.tmp, file);
      else if (!existsSync(file)) throw failed(`blob ${b.digest} left the cache while the image was pulled (bpfd images rm at the same time?)`, ['pull again']);
    }
    // the renames last before the record naming them does: a crash must not leave a cached
    // image whose blobs are gone (a --persist program restores from them, with no network)
    if (staged.some((b) => b.tmp)) fsyncDir(path.dirname(blobPath(stateDir, staged[0].digest)));
    // blobs in place, index not yet: a pull killed here must not look cached
    checkpoint('pull:after-blobs');
    const before = d.refs.get(reference);
    const old = d.images.get(rec.digest);
    const merged: ImageRecord = { ...rec, references: [...new Set([...(old?.references ?? []), reference])] };
    d.images.put(rec.digest, merged);
    d.refs.put(reference, rec.digest);
    // a moved tag no longer names the image it named before
    if (before && before !== rec.digest) {
      const prev = d.images.get(before);
      if (prev) d.images.put(before, { ...prev, references: prev.references.filter((r) => r !== reference) });
    }
    timedSync('cache sweep', () => sweepBlobs(d, stateDir, blobsOf(merged)));
    return merged;
  });
}

export function updateSignature(store: Store, digest: string, signature: ImageRecord['signature']): void {
  const d = open(store);
  d.root.transactionSync(() => {
    const rec = d.images.get(digest);
    if (rec) d.images.put(digest, { ...rec, signature });
  });
}

/** The blobs an image record names. */
export const blobsOf = (r: ImageRecord): string[] => [r.digest, r.index_digest, r.config_digest, r.layer.digest, r.object?.digest].filter((d): d is string => !!d);

/** Forgets an image and every reference to it; blobs no other image uses go with the sweep. */
export function removeImage(store: Store, stateDir: string, digest: string): void {
  const d = open(store);
  d.root.transactionSync(() => {
    if (!d.images.get(digest)) return;
    d.images.remove(digest);
    for (const { key, value } of d.refs.getRange()) if (value === digest) d.refs.remove(key);
    sweepBlobs(d, stateDir);
  });
}
