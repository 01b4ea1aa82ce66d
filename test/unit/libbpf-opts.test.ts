import assert from 'node:assert/strict';
import { test } from 'node:test';
import { koffi } from '../../src/loader/lib.js';
import { LIBBPF_1_4_SIZES, LinkCreateOpts, LinkUpdateOpts, ObjectOpenOpts } from '../../src/loader/abi.js';
import { isSupported } from '../../src/loader/libbpf-version.js';

test("option structs have libbpf 1.4's sizes", () => {
  assert.equal(koffi.sizeof(ObjectOpenOpts), LIBBPF_1_4_SIZES.bpf_object_open_opts);
  assert.equal(koffi.sizeof(LinkCreateOpts), LIBBPF_1_4_SIZES.bpf_link_create_opts);
  assert.equal(koffi.sizeof(LinkUpdateOpts), LIBBPF_1_4_SIZES.bpf_link_update_opts);
});

test('libbpf 1.4 and later are supported, older ones are not', () => {
  assert.ok(isSupported(1, 4) && isSupported(1, 5) && isSupported(2, 0));
  assert.ok(!isSupported(1, 1) && !isSupported(1, 3) && !isSupported(0, 8));
});
