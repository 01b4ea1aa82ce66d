import { failed } from '../base/errors.js';
import type { Paths } from '../base/paths.js';
import { timed } from '../base/timings.js';
import { evaluate, inputSha256, type Decision, type EvaluateOptions } from '../policy/engine.js';
import type { PolicyInput } from '../policy/input.js';
import { message } from '../policy/module.js';
import type { LinkIdentity, Store } from '../state/store.js';

export interface AuthorizeOptions extends EvaluateOptions {
  paths: Pick<Paths, 'policy' | 'policyData' | 'stateDir'>;
  /** the store to log to; opened from paths.stateDir when absent */
  store?: Store;
  /** keep at most this many decisions (default 10000, or BPFD_DECISION_LOG_MAX) */
  logMax?: number;
  /** a change that adds a link: its identity is reserved in the decision's own commit */
  reserveLink?: { keep?: LinkIdentity };
}

/**
 * Decides a request (the policy engine) and records the decision in the store's log (the core's
 * job: the engine writes nothing). The caller acts only when `allow` is true; `enforce` turns a
 * deny into the `denied` error.
 */
export async function authorize(input: PolicyInput, opts: AuthorizeOptions): Promise<Decision & { linkIdentity?: LinkIdentity }> {
  const decision = await evaluate(input, opts.paths, opts);
  try {
    // Loaded here, not at the top: the store pulls in lmdb, which `bpfd policy eval` does not need.
    const { logDecision } = await import('../state/decision-log.js');
    const { openStore } = await import('./store-open.js');
    // A store write with its fsync, not the policy's own cost: timed apart (BPFD_TIMINGS).
    const logged = await timed('decision log', async () => logDecision(
      opts.store ?? openStore(opts.paths.stateDir),
      {
        time: new Date().toISOString(),
        subject: { uid: input.subject.uid, username: input.subject.username, pid: input.subject.pid, via: input.subject.via },
        action: input.action,
        input_sha256: inputSha256(decision),
        allow: decision.allow,
        reasons: decision.reasons,
        policy_sha256: decision.policySha256,
        duration_us: Math.round(decision.durationUs),
      },
      { max: opts.logMax ?? logMaxFromEnv(), reserveLink: opts.reserveLink },
    ));
    return logged.link ? { ...decision, linkIdentity: logged.link } : decision;
  } catch (e) {
    // An allowed action nobody can audit later is not allowed.
    throw failed(`cannot record the policy decision in ${opts.paths.stateDir}: ${message(e)}`, [
      `decision was: ${decision.allow ? 'allow' : 'deny'}; nothing was done`,
    ]);
  }
}

/** undefined: the decision log's own default */
function logMaxFromEnv(): number | undefined {
  const v = Number(process.env.BPFD_DECISION_LOG_MAX);
  return Number.isInteger(v) && v > 0 ? v : undefined;
}
