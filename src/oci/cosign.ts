import type { KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { BpfdError } from '../base/errors.js';
import { sha256Hex } from '../base/sha256.js';
import type { RegistryClient } from './client.js';
import { fetchBlob, fetchManifest } from './manifest.js';
import { nodeCrypto } from './verified.js';

/**
 * cosign's signatures, checked offline: the signature manifest is the tag `sha256-<hex>.sig`
 * next to the image; each of its layers is a simple-signing JSON payload naming the signed
 * manifest digest, with the base64 ECDSA P-256 / SHA-256 signature (DER) over the payload's
 * bytes in the layer annotation. Only keys the administrator put in the keys directory count.
 */
export const SIMPLE_SIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const MAX_PAYLOAD = 64 * 1024;

export interface TrustedKey {
  /** file name in the keys directory, e.g. release.pub */
  name: string;
  /** sha256 of the key's DER SubjectPublicKeyInfo, hex */
  fingerprint: string;
  key: KeyObject;
}

/** A signature as found next to the image: kept with the cached image, so re-checking needs no network. */
export interface StoredSignature {
  payload: string; // base64
  signature: string; // base64 DER
}

export interface SignatureFacts {
  verified: boolean;
  /** the trusted key's file name and fingerprint when verified */
  key: string | null;
  fingerprint: string | null;
  /** why it is not verified (no signature, unknown key, another digest) */
  reason: string | null;
}

export const signatureTag = (digest: string) => `${digest.replace(':', '-')}.sig`;

export const keysDir = (env: NodeJS.ProcessEnv = process.env) => env.BPFD_KEYS_DIR || '/etc/bpfd/keys';

/** The P-256 public keys in the keys directory (*.pub, PEM); others are listed as skipped. */
export function trustedKeys(dir: string): { keys: TrustedKey[]; skipped: string[] } {
  const keys: TrustedKey[] = [];
  const skipped: string[] = [];
  if (!existsSync(dir)) return { keys, skipped };
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.pub')).sort()) {
    try {
      const key = nodeCrypto().createPublicKey(readFileSync(path.join(dir, name)));
      if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
        skipped.push(`${name}: not an ECDSA P-256 key`);
        continue;
      }
      const fingerprint = sha256Hex(key.export({ type: 'spki', format: 'der' }));
      keys.push({ name, fingerprint, key });
    } catch (e) {
      skipped.push(`${name}: ${(e as Error).message}`);
    }
  }
  return { keys, skipped };
}

/** Names the key set: a verification result is valid only for the set it was made with. */
export const keySetId = (keys: TrustedKey[]) => sha256Hex(keys.map((k) => `${k.name}\0${k.fingerprint}\n`).join(''));

/** The signatures stored for a manifest digest, or [] when it has none. */
export async function fetchSignatures(client: RegistryClient, digest: string): Promise<StoredSignature[]> {
  let m;
  try {
    m = await fetchManifest(client, signatureTag(digest));
  } catch (e) {
    if (e instanceof BpfdError && e.kind === 'notFound') return [];
    throw e;
  }
  const out: StoredSignature[] = [];
  for (const layer of m.manifest.layers) {
    const sig = layer.annotations?.[SIGNATURE_ANNOTATION];
    if (layer.mediaType !== SIMPLE_SIGNING || !sig) continue;
    const payload = await fetchBlob(client, layer, MAX_PAYLOAD, 'signature payload');
    out.push({ payload: payload.toString('base64'), signature: sig });
  }
  return out;
}

/**
 * Whether any signature is a trusted key's over this digest. A signature that verifies but
 * names another digest (copied from another image) never counts, and says so.
 */
export function verifySignatures(digests: string[], sigs: StoredSignature[], keys: TrustedKey[]): SignatureFacts {
  if (sigs.length === 0) return { verified: false, key: null, fingerprint: null, reason: 'the image has no cosign signature' };
  if (keys.length === 0) return { verified: false, key: null, fingerprint: null, reason: 'no trusted keys are configured (the keys directory is empty)' };
  let otherDigest: string | null = null;
  for (const s of sigs) {
    const payload = Buffer.from(s.payload, 'base64');
    const signature = Buffer.from(s.signature, 'base64');
    for (const k of keys) {
      let ok = false;
      try {
        ok = nodeCrypto().verify('sha256', payload, { key: k.key, dsaEncoding: 'der' }, signature);
      } catch {
        ok = false;
      }
      if (!ok) continue;
      let signed: string | undefined;
      let type: string | undefined;
      try {
        const doc = JSON.parse(payload.toString('utf8'));
        signed = doc?.critical?.image?.['docker-manifest-digest'];
        type = doc?.critical?.type;
      } catch {
        /* a payload that is not JSON signs nothing */
      }
      if (type !== 'cosign container image signature') continue;
      if (signed && digests.includes(signed)) return { verified: true, key: k.name, fingerprint: k.fingerprint, reason: null };
      otherDigest = signed ?? 'none';
    }
  }
  if (otherDigest) return { verified: false, key: null, fingerprint: null, reason: `the signature by a trusted key is over another digest (${otherDigest}), not this image` };
  return { verified: false, key: null, fingerprint: null, reason: 'no signature is by a trusted key' };
}
