# Sharing maps into applications' bpffs (bpfd bpffs share). Part of bpfd.rego's
# package; split out to keep files short.
package bpfd.authz

# Redundant for OPA 1.x; lets regal releases built on OPA 0.x parse the file.
import rego.v1

# --- sharing maps into applications' bpffs (bpfd bpffs share) -------------
#
# input.share names the mount (path), its owner (who gets the pins) and the
# pins' mode. A grant with "share_paths" limits where its holder may share;
# one with "share_modes" limits the modes it may give.

grant_problems contains [i, msg] if {
	input.action == "share"
	some i in matching_grants
	is_array(grants[i].share_paths)
	not matches_any(grants[i].share_paths, input.share.path)
	msg := concat("", [
		"sharing into ", quote(input.share.path),
		" is not granted (granted: ", list(grants[i].share_paths), ")",
	])
}

grant_problems contains [i, msg] if {
	input.action == "share"
	some i in matching_grants
	is_array(grants[i].share_modes)
	not input.share.mode in grants[i].share_modes
	msg := concat("", [
		"share mode ", quote(input.share.mode),
		" is not granted (granted: ", list(grants[i].share_modes), ")",
	])
}
