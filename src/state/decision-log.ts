import { latest, nextCounter, reserveLinkIdentity, type LinkIdentity } from './lmdb-env.js';
import { handlesOf, type Store } from './store.js';

/** One policy decision as kept in the store and shown by `bpfd policy log`. */
export interface DecisionRecord {
  seq: number;
  /** ISO 8601, UTC */
  time: string;
  subject: { uid: number; username: string; pid: number; via: string };
  action: string;
  /** sha256 of the exact input JSON the policy saw: ties a log line to a reproducible `policy eval` */
  input_sha256: string;
  allow: boolean;
  reasons: string[];
  /** sha256 of the policy module, or null when no module could be read */
  policy_sha256: string | null;
  duration_us: number;
}

/** Enough for months of manual use, small enough that the log never matters for disk space. */
export const DEFAULT_DECISION_LOG_MAX = 10_000;

/**
 * Appends a decision, dropping the oldest beyond `max`. Sequence numbers only grow, so the oldest
 * entries are the lowest keys and dropping them is a short range delete.
 */
export function appendDecision(store: Store, entry: Omit<DecisionRecord, 'seq'>, max = DEFAULT_DECISION_LOG_MAX): DecisionRecord {
  return logDecision(store, entry, { max }).record;
}

/**
 * LMDB's MDB_NOMETASYNC for one transaction: the data is flushed, the meta page is left to the
 * next synced commit (or the system). Integrity holds; a system crash may undo this commit alone.
 */
const NO_META_SYNC = 0x40000 | 0x3; // with lmdb-js's ABORTABLE | SYNCHRONOUS_COMMIT

/**
 * Logs a decision before the change it allows touches the kernel (an allowed action nobody can
 * audit is not allowed), with the link identity that change will use, in one commit. An allowed
 * decision skips the meta-page sync: the commit is on record for every process at once and
 * survives the death of this one; only a system crash could undo it, and that also undoes the
 * kernel change it allowed (bpffs pins and XDP links do not survive a reboot), while the change's
 * own commit, fully synced, makes both durable. A deny is synced in full: it is the last word.
 */
export function logDecision(
  store: Store,
  entry: Omit<DecisionRecord, 'seq'>,
  opts: { max?: number; reserveLink?: { keep?: LinkIdentity } } = {},
): { record: DecisionRecord; link?: LinkIdentity } {
  const max = opts.max ?? DEFAULT_DECISION_LOG_MAX;
  if (!Number.isInteger(max) || max < 1) throw new Error(`decision log size must be a positive integer, got ${max}`);
  const h = handlesOf(store);
  return h.root.transactionSync(() => {
    const seq = nextCounter(h, 'decision');
    const record: DecisionRecord = { seq, ...entry };
    h.decisions.put(seq, record);
    const keepFrom = seq - max + 1;
    if (keepFrom > 1) {
      for (const key of h.decisions.getKeys({ end: keepFrom })) h.decisions.remove(key);
    }
    return opts.reserveLink && entry.allow ? { record, link: reserveLinkIdentity(h, opts.reserveLink.keep) } : { record };
  }, entry.allow ? NO_META_SYNC : undefined);
}

/** Newest first. */
export function recentDecisions(store: Store, limit = 20): DecisionRecord[] {
  const out: DecisionRecord[] = [];
  for (const { value } of latest(handlesOf(store)).decisions.getRange({ reverse: true, limit })) out.push(value as DecisionRecord);
  return out;
}
