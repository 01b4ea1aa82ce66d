#!/usr/bin/env node
// The bpf-map example again, in JavaScript: an unprivileged Node (or Bun) process reads and
// updates a map that bpfd pinned into the application's bpffs. It calls libbpf through koffi
// (bpfd's own dependency), exactly as the C version does: bpf_obj_get on the pin, then lookup
// or update on the fd. No capability is needed, only the pin's file mode.
//
//   node examples/unprivileged/bpf-map.mjs get PIN KEY
//   node examples/unprivileged/bpf-map.mjs set PIN KEY HEX
//
// KEY is a decimal u32 (the maps of bpfd's fixtures have 4-byte keys); the value is read and
// written as hex bytes in the map's value size. Exit 1 with the errno's name when a call fails.
import koffi from 'koffi';

const libbpf = koffi.load('libbpf.so.1');
const ObjGetOpts = koffi.struct('bpf_obj_get_opts', { sz: 'size_t', file_flags: 'uint32_t', path_fd: 'int' });
const objGet = libbpf.func('int bpf_obj_get_opts(const char *path, const bpf_obj_get_opts *opts)');
const infoByFd = libbpf.func('int bpf_obj_get_info_by_fd(int fd, _Inout_ uint8_t *info, _Inout_ uint32_t *len)');
const lookup = libbpf.func('int bpf_map_lookup_elem(int fd, const uint8_t *key, _Out_ uint8_t *value)');
const update = libbpf.func('int bpf_map_update_elem(int fd, const uint8_t *key, const uint8_t *value, uint64_t flags)');

const BPF_F_RDONLY = 1 << 3;
const ERRNO = { 1: 'EPERM', 2: 'ENOENT', 13: 'EACCES', 22: 'EINVAL' };

function fail(what, pin, rc) {
  process.stderr.write(`bpf-map.mjs: ${what} ${pin}: ${ERRNO[-rc] ?? `errno ${-rc}`}\n`);
  process.exit(1);
}

const [cmd, pin, keyText, hex] = process.argv.slice(2);
if (!['get', 'set'].includes(cmd) || !pin || keyText === undefined || (cmd === 'set') !== (hex !== undefined)) {
  process.stderr.write('usage: bpf-map.mjs get PIN KEY | set PIN KEY HEX\n');
  process.exit(2);
}
// libbpf returns -errno from these calls
const fd = objGet(pin, { sz: koffi.sizeof(ObjGetOpts), file_flags: cmd === 'get' ? BPF_F_RDONLY : 0, path_fd: 0 });
if (fd < 0) fail('open', pin, fd);
const info = Buffer.alloc(88);
if (infoByFd(fd, info, [info.length]) < 0) fail('read info of', pin, -22);
const valueSize = info.readUInt32LE(12);
const key = Buffer.alloc(4);
key.writeUInt32LE(Number(keyText));
if (cmd === 'get') {
  const value = Buffer.alloc(valueSize);
  const rc = lookup(fd, key, value);
  if (rc < 0) fail('look up', pin, rc);
  console.log(`key ${keyText} value ${value.toString('hex')}`);
} else {
  const value = Buffer.from(hex, 'hex');
  if (value.length !== valueSize) {
    process.stderr.write(`bpf-map.mjs: give the value as ${valueSize} hex bytes\n`);
    process.exit(2);
  }
  const rc = update(fd, key, value, 0n);
  if (rc < 0) fail('update', pin, rc);
  console.log(`updated key ${keyText}`);
}
