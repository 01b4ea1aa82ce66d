import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import { handlesOf, type Store } from './store.js';

/**
 * The image cache. Blobs (manifests, configs, layers) are files named by their digest under
 * `<state>/oci/blobs/sha256/`, written to a temporary name and renamed into place only once
 * complete and verified; the LMDB index says which images exist. An image counts as cached
 * only when its index record is committed, and that happens after its blobs are in place, so a
 * pull killed half-way leaves at most an unreferenced file, never something that looks cached.
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

/** Writes a verified blob into the cache: temporary file, fsync, rename. */
export function putBlob(stateDir: string, digest: string, bytes: Buffer): void {
  const file = blobPath(stateDir, digest);
  if (existsSync(file)) return;
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
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

/** Records an image (its blobs already written) and points the reference at it. */
export function recordImage(store: Store, rec: ImageRecord, reference: string): ImageRecord {
  const d = open(store);
  return d.root.transactionSync(() => {
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

/** Forgets an image and every reference to it, then deletes blobs no other image uses. */
export function removeImage(store: Store, stateDir: string, digest: string): void {
  const d = open(store);
  const rec = d.images.get(digest);
  if (!rec) return;
  d.root.transactionSync(() => {
    d.images.remove(digest);
    for (const { key, value } of d.refs.getRange()) if (value === digest) d.refs.remove(key);
  });
  const inUse = new Set(allImages(store).flatMap(blobsOf));
  for (const b of blobsOf(rec)) if (!inUse.has(b)) rmSync(blobPath(stateDir, b), { force: true });
}
