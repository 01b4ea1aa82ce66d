import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storeOpenError } from '../../src/state/store-errors.js';

// What a user is told when the store does not open decides what they do next: only real damage
// may advise moving the store aside (which loses every record).
describe('why the store did not open, told apart', () => {
  const dir = '/var/lib/bpfd';

  it("lmdb-js failing to begin its first transaction is a retry, not damage", () => {
    // the error lmdb-js throws from open() when its native beginTxn failed (seen under 8 concurrent loads)
    const e = storeOpenError(dir, new Error('Invalid argument: No transaction to renew'));
    assert.equal(e.kind, 'busy');
    assert.match(e.message, /^cannot open the bpfd store in \/var\/lib\/bpfd: LMDB could not begin a transaction \(Invalid argument: No transaction to renew\)/);
    assert.deepEqual(e.details, ['nothing was changed and nothing in the store is damaged: run the command again']);
    assert.doesNotMatch(e.details.join('\n'), /move .* aside/);
  });

  it('a corrupt store advises moving it aside; an unknown failure only names itself', () => {
    const damaged = storeOpenError(dir, new Error('MDB_CORRUPTED: Located page was wrong type'));
    assert.equal(damaged.kind, 'failed');
    assert.match(damaged.details.join('\n'), /move \/var\/lib\/bpfd aside/);
    const other = storeOpenError(dir, new Error('Input/output error'));
    assert.equal(other.kind, 'failed');
    assert.deepEqual(other.details, ['check that /var/lib/bpfd is a directory bpfd can read and write']);
  });
});
