# The rules of bpfd.authz about programs from OCI images: which registries and
# repositories a grant may load from or pull, and which images must be signed
# by which keys (cosign, verified offline by bpfd; the facts arrive as
# input.image). policies/README.md documents the data keys.
package bpfd.authz

# Redundant for OPA 1.x; lets regal releases built on OPA 0.x parse the file.
import rego.v1

# A grant's "registries" and "repositories" limit the images it may load from
# or pull (input.image; absent for programs from files, which they do not limit).
grant_problems contains [i, msg] if {
	some i in matching_grants
	is_array(grants[i].registries)
	registry := input.image.registry
	not matches_any(grants[i].registries, registry)
	msg := concat("", ["registry ", quote(registry), " is not granted (granted: ", list(grants[i].registries), ")"])
}

grant_problems contains [i, msg] if {
	some i in matching_grants
	is_array(grants[i].repositories)
	repository := input.image.repository
	not matches_any(grants[i].repositories, repository)
	msg := concat("", ["repository ", quote(repository), " is not granted (granted: ", list(grants[i].repositories), ")"])
}

# Images that must be signed, for everyone: each entry of data.signatures
# names the registries and repositories it covers (all when left out) and the
# keys (file names in the keys directory, or sha256 fingerprints) one of which
# must have signed the image. Checked at load, where the signature is known.
deny contains msg if {
	input.action == "load"
	is_object(input.image)
	some rule in signature_rules
	signature_rule_covers(rule)
	not signed_by_rule_key(rule)
	msg := concat("", [
		"image ", quote(input.image.reference), " must be signed by ",
		list(object.get(rule, "keys", [])), ": ", signature_problem,
	])
}

default signature_rules := []

signature_rules := data.signatures if is_array(data.signatures)

signature_rule_covers(rule) if {
	rule_admits(rule, "registries", input.image.registry)
	rule_admits(rule, "repositories", input.image.repository)
}

rule_admits(rule, field, _) if not is_array(object.get(rule, field, null))

rule_admits(rule, field, value) if matches_any(rule[field], value)

signed_by_rule_key(rule) if {
	input.image.signature.verified == true
	some k in rule.keys
	k in {input.image.signature.key, input.image.signature.fingerprint}
}

default signature_problem := "its signature was not checked"

signature_problem := input.image.signature.reason if {
	not input.image.signature.verified == true
	is_string(input.image.signature.reason)
}

signature_problem := msg if {
	input.image.signature.verified == true
	msg := concat("", ["it is signed by ", quote(input.image.signature.key), ", which this rule does not list"])
}
