import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { opensslSha256 } from '../../src/loader/lib.js';
import { hashesNatively, sha256Hex, useNativeSha256 } from '../../src/base/sha256.js';

// The loader offers OpenSSL's SHA256 through koffi, registered here as the core registers it;
// node:crypto is loaded here too, so
// the digest under test is compared with node's own. Lengths around the 64-byte block and its
// 55-byte padding limit, a multi-megabyte buffer, strings with multi-byte characters.
test('sha256Hex agrees with node:crypto for buffers and strings of every awkward length', () => {
  if (opensslSha256) useNativeSha256(opensslSha256);
  assert.ok(hashesNatively(), 'the loader offered no native SHA256: this node exports none');
  const digest = (d: string | Uint8Array) => createHash('sha256').update(d).digest('hex');
  for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, 4 * 1024 * 1024 + 3]) {
    const buf = randomBytes(n);
    assert.equal(sha256Hex(buf), digest(buf), `${n} bytes`);
    assert.equal(sha256Hex(buf.subarray(1)), digest(buf.subarray(1)), `${n} bytes, offset view`);
  }
  for (const s of ['', 'abc', 'prioritä 50 – ✓', JSON.stringify({ a: 'ü'.repeat(100) })]) assert.equal(sha256Hex(s), digest(s), s);
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});
