import { writeSync } from 'node:fs';

/**
 * BPFD_TIMINGS=1 prints, when the command exits, how long its phases took: for an administrator
 * asking why a command is slow (a heavy policy, a slow kernel attach), and for the benchmarks,
 * which read the policy's share of a real cold `bpfd load` from it. Off, it costs one branch.
 */
const enabled = !!process.env.BPFD_TIMINGS;

/**
 * Milliseconds since the process started. Not performance.now(): the first touch of the
 * `performance` global loads perf_hooks, ~1 ms of a command's start-up.
 */
export const nowMs = (): number => process.uptime() * 1000;
const spans = new Map<string, number>();

export async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  if (!enabled) return fn();
  const start = nowMs();
  try {
    return await fn();
  } finally {
    record(name, nowMs() - start);
  }
}

export function timedSync<T>(name: string, fn: () => T): T {
  if (!enabled) return fn();
  const start = nowMs();
  try {
    return fn();
  } finally {
    record(name, nowMs() - start);
  }
}

/**
 * BPFD_TIMINGS=timeline also prints when (ms since the process started) each named point of a
 * command was first reached: where start-up ends, when the lock was taken, and so on.
 */
const timeline = process.env.BPFD_TIMINGS === 'timeline';
const marks: Array<[string, number]> = [];
export function mark(name: string): void {
  if (timeline) marks.push([name, nowMs()]);
}

/** Adds a duration measured elsewhere (the lock's wait, for one). */
export function record(name: string, ms: number): void {
  if (enabled) spans.set(name, (spans.get(name) ?? 0) + ms);
}

if (enabled) {
  process.on('exit', () => {
    const parts = [...spans].map(([k, v]) => `${k} ${v.toFixed(2)} ms`);
    // since the process started, node's own start-up included
    parts.push(`process ${nowMs().toFixed(2)} ms`);
    writeSync(2, `bpfd timings: ${parts.join(', ')}\n`);
    if (timeline) writeSync(2, `bpfd timeline: ${marks.map(([k, v]) => `${k} @${v.toFixed(2)}`).join(', ')}\n`);
  });
}
