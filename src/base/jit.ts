/**
 * The executable starts with JavaScriptCore's JIT made reluctant (scripts/compile.mjs): a command
 * runs its code once and exits. A process that keeps serving (bpfd system service) asks for the
 * normal policy once it is up, so its request paths get compiled. The entry point (the one place
 * that may use Bun's own API) provides how; under node, or unset, this does nothing.
 */
let normalJit: (() => void) | null = null;

export function useNormalJit(fn: () => void): void {
  normalJit = fn;
}

/** From now on, compile hot code as usual: this process will run for a while. */
export function longRunning(): void {
  normalJit?.();
  normalJit = null;
}
