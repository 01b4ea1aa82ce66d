import { BpfdError, failed } from '../base/errors.js';

/**
 * Executing a plan: steps run in order, each with the undo that takes it back. When one fails,
 * the undos of the steps already done run in reverse, and the original error is what the caller
 * sees; an undo that fails too is reported beside it (a detail line naming the step and why),
 * never instead of it, and the other undos still run.
 */
export interface Step {
  /** what the step does, for the undo report: "load xdp_pass into the kernel" */
  name: string;
  run(): void;
  /** takes the step back; absent when there is nothing to take back */
  undo?(): void;
}

export function runSteps(steps: readonly Step[]): void {
  const done: Step[] = [];
  try {
    for (const step of steps) {
      step.run();
      done.push(step);
    }
  } catch (e) {
    const undoFailures: string[] = [];
    for (const step of done.reverse()) {
      try {
        step.undo?.();
      } catch (u) {
        undoFailures.push(`and undoing "${step.name}" failed too: ${(u as Error).message ?? String(u)}`);
      }
    }
    throw undoFailures.length ? withUndoFailures(e, undoFailures) : e;
  }
}

/** The original error with the failed undos added to its details. */
function withUndoFailures(e: unknown, lines: string[]): unknown {
  if (e instanceof BpfdError) {
    (e.details as string[]).push(...lines);
    return e;
  }
  return failed((e as Error).message ?? String(e), lines);
}
