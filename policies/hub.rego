# Who may do what at the hub.
#
# Input: the hub input document, version 1 (docs/policy-input.md). Output: data.medfed.hub.decision,
# {"allow": bool, "reasons": [string]}. The hub evaluates this on every API call; a denial is
# answered 403 and audited with the reasons.
package medfed.hub

import rego.v1

default allow := false

roles := {r | some r in input.subject.roles}

may_research if count(roles & {"researcher", "clinician"}) > 0

# Anyone authenticated may see the network's sites, its catalogue (schemas, no counts) and studies.
# (Reviews are filtered by the hub: custodians see their sites', researchers their own.)
allow if input.action in {"whoami", "sites.read", "catalog.read", "study.read", "review.read"}

# Researchers and clinicians propose studies.
allow if {
	input.action == "study.propose"
	may_research
}

# A custodian decides for a site they are custodian of, and only on a study that asks for it.
allow if {
	input.action == "study.decide"
	"custodian" in roles
	input.site in input.subject.sites
	input.site in input.study.sites
}

# A custodian reviews a held release for a site they are custodian of that the study asked for.
allow if {
	input.action == "review.decide"
	"custodian" in roles
	input.site in input.subject.sites
	input.site in input.study.sites
}

# A study's proposer and members query it, once at least one site has approved it.
allow if {
	input.action == "query"
	may_research
	is_member
	count(approved_sites) > 0
}

# Auditors read the trail; nobody writes it through the API.
allow if {
	input.action == "audit.read"
	"auditor" in roles
}

# Network admins manage users.
allow if {
	input.action == "user.manage"
	"admin" in roles
}

is_member if input.subject.id == input.study.proposer

is_member if input.subject.id in input.study.members

approved_sites contains site if {
	some site, state in input.study.approvals
	state == "approved"
}

# Why not, in words (only when denied).
reasons contains sprintf("role(s) %v may not %s", [sort(roles), input.action]) if {
	not allow
	not input.action in {"query", "study.decide", "review.decide"}
}

reasons contains "only researchers and clinicians may query" if {
	not allow
	input.action == "query"
	not may_research
}

reasons contains sprintf("%s is not a member of study %s", [input.subject.id, input.study.id]) if {
	not allow
	input.action == "query"
	not is_member
}

reasons contains sprintf("no site has approved study %s yet", [input.study.id]) if {
	not allow
	input.action == "query"
	count(approved_sites) == 0
}

reasons contains sprintf("%s is not the custodian of site %s", [input.subject.id, input.site]) if {
	not allow
	input.action in {"study.decide", "review.decide"}
	not input.site in input.subject.sites
}

reasons contains sprintf("study %s does not ask for site %s", [input.study.id, input.site]) if {
	not allow
	input.action == "study.decide"
	not input.site in input.study.sites
}

decision := {"allow": allow, "reasons": sort([r | some r in reasons])}
