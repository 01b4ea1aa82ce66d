# How a request arrived (input.subject.via: cli, sudo, socket, tcp) and which
# grants cover each way. Part of bpfd.rego's package; split out to keep files short.
package bpfd.authz

# Redundant for OPA 1.x; lets regal releases built on OPA 0.x parse the file.
import rego.v1

# --- via: sudo, socket and tcp ----------------------------------------------

# A grant that lists "via" applies only to requests that arrive one of those
# ways, e.g. ["socket"] for a group that may use the service but not sudo.
grant_problems contains [i, msg] if {
	some i in matching_grants
	is_array(grants[i].via)
	not via_granted(i)
	msg := concat("", [
		"requests via ", quote(object.get(input.subject, "via", "unknown")),
		" are not granted (granted: ", list(grants[i].via), ")",
	])
}

grant_problems contains [i, msg] if {
	input.subject.via == "tcp"
	some i in matching_grants
	not tcp_granted(i)
	msg := "calls over TCP are anonymous and this grant does not list \"tcp\" in \"via\""
}

via_granted(i) if input.subject.via in grants[i].via

tcp_granted(i) if "tcp" in grants[i].via
