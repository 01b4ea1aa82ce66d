import { holdExclusive } from '../base/file-lock.js';
import { useEnvGuard } from '../state/env-guard.js';
import { openStore } from '../state/store.js';

/**
 * The store, opened with LMDB's environment opens and closes serialised across bpfd processes
 * (state/env-guard.ts says why) by a flock beside it. A holder takes it for about a millisecond;
 * one that does not let go in 10 s (a hung process) is not waited for.
 */
useEnvGuard((file) => holdExclusive(file, 10_000) ?? (() => {}));

export { openStore };
