package run

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prox-ops/drover/internal/notify"
	"github.com/prox-ops/drover/internal/rollout"
	"github.com/prox-ops/drover/internal/runreport"
)

// Output is an upgrade's report: the engine's, and what the run knows
// around it. It is the audit report file and `--output json`.
type Output struct {
	*rollout.Report
	*LabStats
	Rationale        string `json:"rationale,omitempty"`
	ApprovalRequired bool   `json:"approvalRequired"`
	// Notifications says which notifications were delivered.
	Notifications []notify.Delivery `json:"notifications,omitempty"`
	// Approved: the run was approved with --approve.
	Approved bool `json:"approved"`
	// Trigger says who and what started the run.
	Trigger *runreport.Trigger `json:"trigger,omitempty"`
	// VersionSources says where each node's version was read.
	VersionSources map[string]string `json:"versionSources,omitempty"`
}

// Simulated says the run's times are the lab's virtual clock's.
func (o *Output) Simulated() bool { return o.LabStats != nil }

// report builds the run's Output and writes it where it goes: the GitHub
// Actions files (step summary, outputs) and the audit report file.
func (u *Upgrade) report(rep *rollout.Report) *Output {
	p, env := u.planned, u.planned.env
	if env.getenv("GITHUB_ACTIONS") == "true" {
		if err := notify.WriteGitHubFiles(env.getenv, rep, env.mask); err != nil {
			env.warn("%v", err)
		}
	}
	stats := p.Site.Stats()
	if stats != nil {
		stats.SimulatedDurationSeconds = rep.Duration.Seconds()
	}
	out := &Output{Report: rep, LabStats: stats, Rationale: p.Decision.Rationale, ApprovalRequired: p.Decision.ApprovalRequired,
		Notifications: u.deliveries, Approved: u.opts.Approve, Trigger: TriggerOf(env.Getenv), VersionSources: p.VersionSources()}
	path := u.opts.Report
	if path == "" {
		path = p.Site.Defaults().Report
	}
	if path != "" {
		b, err := json.MarshalIndent(out, "", "  ")
		if err == nil && env.Masker != nil {
			// By string values: a secret must not break the document.
			b, err = env.Masker.MaskJSON(b)
		}
		if err == nil {
			err = os.WriteFile(path, append(b, '\n'), 0o600)
		}
		if err != nil {
			env.warn("write the report: %v", err)
		}
	}
	return out
}

// TriggerOf is who and what started the run, from the GitHub Actions
// environment when there is one.
func TriggerOf(getenv func(string) string) *runreport.Trigger {
	get := func(k string) string {
		if getenv == nil {
			return ""
		}
		return getenv(k)
	}
	t := &runreport.Trigger{Actor: get("GITHUB_ACTOR"), Repository: get("GITHUB_REPOSITORY"), SHA: get("GITHUB_SHA"),
		Workflow: get("GITHUB_WORKFLOW"), PR: get("DROVER_PR_NUMBER")}
	if ref := get("GITHUB_REF"); t.PR == "" && strings.HasPrefix(ref, "refs/pull/") {
		t.PR = strings.Split(strings.TrimPrefix(ref, "refs/pull/"), "/")[0]
	}
	if srv, id := get("GITHUB_SERVER_URL"), get("GITHUB_RUN_ID"); srv != "" && id != "" && t.Repository != "" {
		t.RunURL = srv + "/" + t.Repository + "/actions/runs/" + id
	}
	if *t == (runreport.Trigger{}) {
		u := get("USER")
		if u == "" {
			u = "unknown"
		}
		t.Actor = u + " (command line)"
	}
	return t
}

// mergeReports joins the report of a run that handed off and the one of
// its continuation in the same process into one: the continuation's
// result, the first part's start, every node as far as it got (a node the
// continuation found done keeps what the first part did to it), batches
// numbered on from the first part's.
func mergeReports(first, next *rollout.Report) *rollout.Report {
	out := *next
	out.Started = first.Started
	out.Duration = out.Finished.Sub(out.Started)
	out.DurationSeconds = out.Duration.Seconds()
	out.TemplatesSeconds = first.TemplatesSeconds + next.TemplatesSeconds
	out.KnownBeforeRun = first.KnownBeforeRun
	out.MissedTargets = append(slices.Clone(first.MissedTargets), next.MissedTargets...)
	out.SkippedPreflights = first.SkippedPreflights
	batches := 0
	for _, n := range first.Nodes {
		batches = max(batches, n.Batch)
	}
	out.Nodes = make([]rollout.NodeReport, 0, len(first.Nodes))
	for _, f := range first.Nodes {
		n := next.Node(f.Name)
		if n == nil || n.Outcome == rollout.OutcomeSkipped || n.Outcome == rollout.OutcomeUntouched && f.Outcome != rollout.OutcomeUntouched {
			out.Nodes = append(out.Nodes, f)
			continue
		}
		merged := *n
		if merged.Batch > 0 {
			merged.Batch += batches
		}
		merged.Steps = append(slices.Clone(f.Steps), n.Steps...)
		if f.ChangedSeconds > 0 {
			// Changed before the hand-off; the continuation only watched it.
			merged.ChangedSeconds, merged.Duration = f.ChangedSeconds, merged.Duration+time.Duration(f.ChangedSeconds*float64(time.Second))
			merged.DurationSeconds = merged.Duration.Seconds()
		}
		out.Nodes = append(out.Nodes, merged)
	}
	return &out
}
