import { timed } from '../base/timings.js';
import { sudoCaller } from './caller.js';
import { pullImage, type PulledImage, type RegistryOptions } from '../oci/pull.js';
import { parseReference, type ImageReference } from '../oci/reference.js';

/**
 * A pull's requests to the registry, sent before the policy has decided the pull, so that its
 * round trips overlap bpfd's own start-up and the decision. Only in the caller's own process
 * (core/images.ts fetchWhileDeciding), which could ask the registry itself anyway. Nothing of it
 * is used before allow(), which the pull calls once the policy has allowed it and the decision is
 * logged; stop() ends the requests in flight (a denied pull, a failed start-up), so that the
 * process does not stay for them. Light on purpose: no store, no policy engine.
 */
export interface EarlyFetch {
  ref: ImageReference;
  /** settles once the requests for config, layer and signatures are out, or the fetch has ended */
  blobsRequested: Promise<void>;
  /** the fetched and verified image; a failure is the caller's to report, after the decision */
  fetching: Promise<PulledImage>;
  allow(): void;
  stop(): Promise<void>;
}

/**
 * Whose registry credentials a request may use: root's own (BPFD_REGISTRY_AUTH, root's credential
 * files) only when root asks. A user under sudo or a client of the service brings their own
 * (--registry-auth, BytecodeImage.username/password), or pulls anonymously.
 */
export function credentialScope(uid: number, o: RegistryOptions): RegistryOptions {
  return uid === 0 ? o : { ...o, ownCredentialsOnly: true };
}

/** Starts fetching an image; its progress is shown only once allowed. */
export function startFetch(ref: ImageReference, o: RegistryOptions): EarlyFetch {
  const stopper = new AbortController();
  let allowed = false;
  // what came before the allow is shown at the allow, as where the fetch is by then
  let before: [string, number, number] | null = null;
  const progress = o.progress && ((what: string, got: number, total: number) => {
    if (allowed) o.progress?.(what, got, total);
    else before = [what, got, total];
  });
  let requested!: () => void;
  const blobsRequested = new Promise<void>((resolve) => (requested = resolve));
  const fetching = timed('pull', () => pullImage(ref, { ...o, progress, signal: stopper.signal, blobsRequested: requested }));
  const ended = fetching.then(() => undefined, () => undefined);
  void ended.then(requested);
  return {
    ref,
    blobsRequested,
    fetching,
    allow: () => {
      allowed = true;
      if (before) o.progress?.(...before);
      before = null;
    },
    stop: async () => {
      stopper.abort();
      await ended;
    },
  };
}

/**
 * `bpfd pull` in the caller's own process (not under sudo: there bpfd acts for the user who ran it,
 * and asks the registry only once the policy allows): the fetch starts at once, before the store
 * and the policy engine load. Credentials as core/images.ts's pull would choose them.
 */
export function prefetchImage(refText: string, o: RegistryOptions): EarlyFetch | undefined {
  if (sudoCaller()) return undefined;
  return startFetch(parseReference(refText), credentialScope(process.getuid?.() ?? -1, o));
}
