import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { takeGuard, useEnvGuard } from '../../src/state/env-guard.js';

// The guard is a flock, one per open file: a process that took it again through a second
// descriptor while holding it (an exit listener running during a close) would wait on itself.
describe("the store's open guard within one process", () => {
  it('a nested take shares the hold; the last release lets go, once', () => {
    const events: string[] = [];
    useEnvGuard((file) => {
      events.push(`lock ${file}`);
      return () => events.push(`unlock ${file}`);
    });
    const outer = takeGuard('/s/env.lock');
    const inner = takeGuard('/s/env.lock');
    assert.deepEqual(events, ['lock /s/env.lock'], 'the second take did not lock again');
    inner();
    inner();
    assert.deepEqual(events, ['lock /s/env.lock'], 'still held by the outer take, whatever the inner one repeats');
    outer();
    assert.deepEqual(events, ['lock /s/env.lock', 'unlock /s/env.lock']);
    takeGuard('/t/env.lock')();
    assert.deepEqual(events.slice(2), ['lock /t/env.lock', 'unlock /t/env.lock'], 'another state dir has a guard of its own');
  });
});
