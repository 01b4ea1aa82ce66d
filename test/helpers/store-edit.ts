import { openHandles } from '../../src/state/lmdb-env.js';
import type { ProgramRecord } from '../../src/state/records.js';

/**
 * Changes a program's record the way a hand edit of the store would (or the service, recording
 * a caller other than root): straight in LMDB, with no bpfd command running. Returns the record
 * as it was.
 */
export function editProgramRecord(stateDir: string, id: number, edit: (r: ProgramRecord) => unknown): ProgramRecord {
  const h = openHandles(stateDir);
  try {
    const rec = h.programs.get(id) as ProgramRecord;
    h.programs.putSync(id, edit(structuredClone(rec)) as ProgramRecord);
    return rec;
  } finally {
    h.root.close();
  }
}

export function readProgramRecord(stateDir: string, id: number): ProgramRecord | undefined {
  const h = openHandles(stateDir);
  try {
    return h.programs.get(id) as ProgramRecord | undefined;
  } finally {
    h.root.close();
  }
}
