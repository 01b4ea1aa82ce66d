import { invalidInput } from '../base/errors.js';

/**
 * An image reference, split the way registries need it. `quay.io/org/prog:v1`,
 * `localhost:5000/prog@sha256:…`, `prog` (Docker Hub, `library/prog:latest`).
 */
export interface ImageReference {
  /** host[:port] as written (docker.io for references without one) */
  registry: string;
  /** repository path inside the registry, e.g. org/prog */
  repository: string;
  tag: string | null;
  digest: string | null;
  /** registry/repository[:tag][@digest]: the canonical spelling, used as the cache key */
  canonical: string;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;

export const isDigest = (s: string): boolean => DIGEST.test(s);

export function parseReference(input: string): ImageReference {
  const bad = (why: string) =>
    invalidInput(`image reference '${input}' is not valid: ${why}`, ['write it as REGISTRY/REPOSITORY:TAG or REGISTRY/REPOSITORY@sha256:DIGEST, e.g. quay.io/org/prog:v1']);
  const s = input.trim();
  if (!s) throw bad('it is empty');
  if (/\s/.test(s)) throw bad('it contains white space');
  let rest = s;
  let digest: string | null = null;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw bad(`'${digest}' is not a sha256 digest (sha256: and 64 lower-case hex digits)`);
  }
  let registry = 'docker.io';
  const slash = rest.indexOf('/');
  if (slash > 0) {
    const first = rest.slice(0, slash);
    // the first component is a registry when it looks like a host: a dot, a port, or localhost
    if (first.includes('.') || first.includes(':') || first === 'localhost') {
      registry = first;
      rest = rest.slice(slash + 1);
    }
  }
  let tag: string | null = null;
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad(`tag '${tag}' may hold only letters, digits, '_', '.', '-' (at most 128)`);
  }
  if (!rest) throw bad('the repository is missing');
  for (const c of rest.split('/')) if (!COMPONENT.test(c)) throw bad(`repository component '${c}' must be lower-case letters and digits, separated by '.', '_' or '-'`);
  if (!/^[A-Za-z0-9.-]+(:\d{1,5})?$/.test(registry) && !/^\[[0-9a-fA-F:]+\](:\d{1,5})?$/.test(registry)) throw bad(`registry '${registry}' is not a host[:port]`);
  if (registry === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`;
  if (!tag && !digest) tag = 'latest';
  const canonical = `${registry}/${rest}${tag ? `:${tag}` : ''}${digest ? `@${digest}` : ''}`;
  return { registry, repository: rest, tag, digest, canonical };
}

/** The reference with a digest instead of a tag: what a pulled image is pinned to. */
export const pinned = (r: ImageReference, digest: string) => `${r.registry}/${r.repository}@${digest}`;

/** The host an API request goes to (Docker Hub's API lives on another name). */
export const apiHost = (registry: string) => (registry === 'docker.io' ? 'registry-1.docker.io' : registry);

/** Loopback registries may speak plain HTTP (tests, local mirrors). */
export function isLoopback(registry: string): boolean {
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
