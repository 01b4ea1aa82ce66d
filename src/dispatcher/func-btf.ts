/**
 * The smallest BTF the verifier accepts as func_info for a composed program: one `int` type, one
 * prototype `int (void)`, and one static FUNC per subprogram. The verifier needs func_info to
 * allow callbacks (bpf_loop) and tail calls inside subprograms; static linkage keeps every
 * function verified in its caller's context, exactly as the member was verified alone, so the
 * prototype carries no promises about arguments.
 */

const BTF_MAGIC = 0xeb9f;
const BTF_KIND_INT = 1;
const BTF_KIND_FUNC = 12;
const BTF_KIND_FUNC_PROTO = 13;
const BTF_INT_SIGNED = 1 << 24;
const BTF_FUNC_STATIC = 0;

export interface FuncBtf {
  btf: Buffer;
  /** {insn_off, type_id} records, one per name, in the order given */
  funcInfo: Buffer;
}

/** funcs: [instruction offset, name] sorted by offset, the first at 0. */
export function buildFuncBtf(funcs: Array<{ insnOff: number; name: string }>): FuncBtf {
  const strings: Buffer[] = [Buffer.from([0])];
  let strLen = 1;
  const addString = (s: string): number => {
    const off = strLen;
    const b = Buffer.from(`${s}\0`);
    strings.push(b);
    strLen += b.length;
    return off;
  };
  const types: Buffer[] = [];
  const type = (nameOff: number, kind: number, vlen: number, sizeOrType: number, extra?: number) => {
    const b = Buffer.alloc(extra === undefined ? 12 : 16);
    b.writeUInt32LE(nameOff, 0);
    b.writeUInt32LE(((kind & 0x1f) << 24) | (vlen & 0xffff), 4);
    b.writeUInt32LE(sizeOrType, 8);
    if (extra !== undefined) b.writeUInt32LE(extra, 12);
    types.push(b);
    return types.length; // type ids start at 1
  };

  const intId = type(addString('int'), BTF_KIND_INT, 0, 4, BTF_INT_SIGNED | 32);
  const protoId = type(0, BTF_KIND_FUNC_PROTO, 0, intId);
  const funcInfo = Buffer.alloc(funcs.length * 8);
  funcs.forEach((f, n) => {
    const id = type(addString(f.name), BTF_KIND_FUNC, BTF_FUNC_STATIC, protoId);
    funcInfo.writeUInt32LE(f.insnOff, n * 8);
    funcInfo.writeUInt32LE(id, n * 8 + 4);
  });

  const typeSec = Buffer.concat(types);
  const strSec = Buffer.concat(strings);
  const hdr = Buffer.alloc(24);
  hdr.writeUInt16LE(BTF_MAGIC, 0);
  hdr[2] = 1; // version
  hdr[3] = 0; // flags
  hdr.writeUInt32LE(24, 4); // hdr_len
  hdr.writeUInt32LE(0, 8); // type_off
  hdr.writeUInt32LE(typeSec.length, 12);
  hdr.writeUInt32LE(typeSec.length, 16); // str_off
  hdr.writeUInt32LE(strSec.length, 20);
  return { btf: Buffer.concat([hdr, typeSec, strSec]), funcInfo };
}
