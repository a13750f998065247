# What this site allows. The site evaluates this on every request, even one the hub approved.
#
# Edit the settings below and save: the site reloads this file before its next request (a file
# that does not compile is refused and the previous policy stays in force). Input: the site input
# document, version 1 (docs/policy-input.md). Output: data.medfed.site.decision,
# {"allow": bool, "reasons": [string], "min_cell_count": number}.
package medfed.site

import rego.v1

# ---- This site's settings ----------------------------------------------------------------------
# Analyses this site runs at all.
allowed_analyses := {"sql", "stats", "glm", "survival", "fedavg"}

# Tables whose contents never leave, even as aggregates (free text).
blocked_tables := {"note", "note_nlp"}

# Studies this site refuses whatever the hub says.
blocked_studies := set()

# Minimum cell count k for this site's partials (the network's k applies when it is larger).
min_cell_count := 10

# Whether this site answers "exact" studies (disclosure control, no noise). Set to false and
# only differentially private studies are answered here.
allow_exact_studies := true

# Whether this site releases partials only under secure aggregation (masked, into the network's
# sum, so k judges the network's total and the hub never sees this site's cells). Set to true
# and requests for a plain partial are refused.
require_secure_aggregation := false

# Largest total ε a differentially private study may spend here.
max_study_epsilon := 1.0

# Hours (UTC) in which federated work may run here.
open_hours_utc := numbers.range(0, 23)

# ---- Rules -------------------------------------------------------------------------------------
default allow := false

allow if count(deny) == 0

deny contains "this site's custodian has not approved the study" if {
	input.study.approval != "approved"
}

deny contains sprintf("study %s is blocked at this site", [input.study.id]) if {
	input.study.id in blocked_studies
}

deny contains sprintf("analysis %s is not run at this site", [input.request.analysis]) if {
	not input.request.analysis in allowed_analyses
}

deny contains sprintf("analysis %s is not one study %s was approved for", [input.request.analysis, input.study.id]) if {
	not input.request.analysis in input.study.terms.analyses
}

deny contains sprintf("table %s does not leave this site", [t]) if {
	some t in input.request.tables
	t in blocked_tables
}

deny contains sprintf("table %s is outside study %s's approved tables", [t, input.study.id]) if {
	some t in input.request.tables
	not t in input.study.terms.tables
}

# Columns a study lists for a table (empty: the whole table).
listed_columns(table) := {c |
	some full in input.study.terms.columns
	parts := split(full, ".")
	parts[0] == table
	c := parts[1]
}

deny contains sprintf("column %s.%s is outside study %s's approved columns", [t, c, input.study.id]) if {
	some t, cols in input.request.columns
	listed := listed_columns(t)
	count(listed) > 0
	not "*" in listed
	some c in cols
	not c in listed
}

deny contains sprintf("study ε %v exceeds this site's cap of %v", [input.study.terms.epsilon, max_study_epsilon]) if {
	input.study.terms.privacy == "dp"
	input.study.terms.epsilon > max_study_epsilon
}

deny contains sprintf("this site answers only differentially private studies; study %s is exact", [input.study.id]) if {
	input.study.terms.privacy == "exact"
	not allow_exact_studies
}

deny contains "this site releases its partials only under secure aggregation; the request asked for a plain partial" if {
	require_secure_aggregation
	not input.request.secure_aggregation
}

deny contains sprintf("federated work runs here only in hours %v (UTC)", [sort(open_hours_utc)]) if {
	not input.now.hour_utc in open_hours_utc
}

decision := {
	"allow": allow,
	"reasons": sort([r | some r in deny]),
	"min_cell_count": min_cell_count,
}
