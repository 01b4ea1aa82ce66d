// Names under bpfd's bpffs that the recovery check reads without loading libbpf.

/** Temp map directories a crashed load may leave: tmp_<pid>_<stamp>. */
export const TMP_MAPS_DIR = /^tmp_(\d+)_[0-9a-z]+$/;
