/**
 * Test-only fault injection at named steps of mutating operations, so tests can prove that a
 * crash or a slow holder at any step leaves store and kernel consistent. Inert unless
 * BPFD_TEST_HOOK is set, e.g. BPFD_TEST_HOOK=load:after-pin=kill or =sleep:2000, or =note (a line
 * on stderr each time the step is reached, so a test can tell that a run got that far); the value
 * names one step. Steps are listed where they are called (grep "checkpoint(").
 */
// read at each step, not once: the service sets it from its --test-hook flag after start-up
const hookSpec = () => process.env.BPFD_TEST_HOOK;

export function checkpoint(step: string): void {
  const spec = hookSpec();
  if (!spec) return;
  const eq = spec.lastIndexOf('=');
  if (spec.slice(0, eq) !== step) return;
  const action = spec.slice(eq + 1);
  if (action === 'kill') process.kill(process.pid, 'SIGKILL');
  if (action === 'note') process.stderr.write(`bpfd: test hook: reached ${step}\n`);
  const sleep = /^sleep:(\d+)$/.exec(action);
  if (sleep) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(sleep[1]));
}

/**
 * BPFD_BOOT_ID stands in for the kernel's boot id (/proc/sys/kernel/random/boot_id), so that a
 * test can simulate a reboot: a new boot id and an emptied bpffs (test/helpers/reboot.ts).
 * Inert unless set.
 */
export function bootIdOverride(): string | undefined {
  return process.env.BPFD_BOOT_ID || undefined;
}
