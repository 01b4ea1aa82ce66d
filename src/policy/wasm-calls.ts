/**
 * Which functions the fuel rewrite (wasm-fuel.ts) charges at entry: as few as still bound the
 * work done between two charges by a constant.
 *
 * Every loop iteration is charged anyway. What remains is work done by calls, and a function is
 * charged at entry when
 *  - it calls through a table (call_indirect) or an imported function: the callee, or what the
 *    host calls back, is not known here;
 *  - it lies on a cycle of direct calls (recursion), so that every cycle passes a charge;
 *  - or the straight-line work of one of its runs, counted down through the uncharged functions
 *    it calls (one run of each per call instruction, loops not multiplied, being charged), would
 *    exceed MAX_UNCHARGED_WORK instructions. This is what stops call trees that grow without
 *    loops or recursion (f calls g twice, g calls h twice, ...).
 * So between two charges run at most MAX_UNCHARGED_WORK instructions per call instruction of the
 * function that charged (plus that function's own straight-line code): a bound fixed by the
 * module, whatever the input.
 */

/** Instructions one uncharged run of a function may account for, its uncharged callees included. */
export const MAX_UNCHARGED_WORK = 1000;

/** What the first pass over a function body found out about its calls. */
export interface Calls {
  /** instructions in the body */
  instructions: number;
  /** callees of its direct calls of defined functions (indices among defined functions), once per call instruction */
  callees: number[];
  /** a call_indirect, a tail call through a table, or a call to an imported function */
  opaque: boolean;
}

/** For each defined function, whether it is charged at entry. */
export function chargedAtEntry(calls: Calls[]): boolean[] {
  const charged = calls.map((c) => c.opaque);
  const work = new Float64Array(calls.length);
  // Strongly connected components of the direct calls, each found after every component it
  // calls (Tarjan's order): callees' work is known before their callers'.
  for (const component of components(calls)) {
    const f = component[0];
    if (component.length > 1 || calls[f].callees.includes(f)) {
      for (const g of component) charged[g] = true;
      continue;
    }
    let w = calls[f].instructions;
    for (const g of calls[f].callees) w += charged[g] ? 1 : work[g];
    if (w > MAX_UNCHARGED_WORK) charged[f] = true;
    work[f] = w;
  }
  return charged;
}

/** Tarjan's strongly connected components, without recursion (a call chain can be deep). */
function components(calls: Calls[]): number[][] {
  const n = calls.length;
  const index = new Int32Array(n).fill(-1);
  const low = new Int32Array(n);
  const onStack = new Uint8Array(n);
  const stack: number[] = [];
  const out: number[][] = [];
  let next = 0;
  for (let root = 0; root < n; root++) {
    if (index[root] !== -1) continue;
    const frames: Array<[number, number]> = [[root, 0]]; // function, next callee to visit
    index[root] = low[root] = next++;
    stack.push(root);
    onStack[root] = 1;
    while (frames.length > 0) {
      const frame = frames[frames.length - 1];
      const [f, i] = frame;
      if (i < calls[f].callees.length) {
        frame[1]++;
        const g = calls[f].callees[i];
        if (index[g] === -1) {
          index[g] = low[g] = next++;
          stack.push(g);
          onStack[g] = 1;
          frames.push([g, 0]);
        } else if (onStack[g]) low[f] = Math.min(low[f], index[g]);
        continue;
      }
      frames.pop();
      if (frames.length > 0) {
        const parent = frames[frames.length - 1][0];
        low[parent] = Math.min(low[parent], low[f]);
      }
      if (low[f] === index[f]) {
        const component: number[] = [];
        let g: number;
        do {
          g = stack.pop()!;
          onStack[g] = 0;
          component.push(g);
        } while (g !== f);
        out.push(component);
      }
    }
  }
  return out;
}
