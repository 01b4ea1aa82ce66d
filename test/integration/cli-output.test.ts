import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { BPFD } from '../helpers/bpfd.js';

// bpfd writes its answer straight to fd 1 (src/cli/output.ts). A reader that has gone away
// (`bpfd list | head -1` once head has what it wants) must not turn into an error or a crash.
test('a reader that closed the pipe early gets no error: bpfd exits 0 and says nothing', () => {
  // `true` exits at once; bpfd starts writing after it is gone, so its write meets EPIPE
  const r = spawnSync('bash', ['-c', `set -o pipefail; (sleep 0.3; "${BPFD}" version -o json) | true`], { encoding: 'utf8' });
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  assert.equal(r.stderr, '');
});
